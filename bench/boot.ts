// `npm run bench -- boot`: how long `kata-ts run` takes to the container's first output, split into
// phases, against the floor (the same QEMU, kernel and machine type booting a busybox-only initrd that
// only announces itself on the serial port) and the guest's own Node start; plus the guest's own
// timeline of a plain agent boot (its console lines, on the guest clock). Runs are interleaved so a
// noisy minute hits every variant alike.

import { spawn } from "node:child_process";
import { copyFile, mkdir, readFile, rm, writeFile, appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { delay } from "../src/base/async.js";
import { ignoreErrno } from "../src/base/errors.js";
import { nullLogger } from "../src/base/log.js";
import { QemuHypervisor } from "../src/hypervisor/qemu/qemu.js";
import type { ReadonlyDisk, Vm } from "../src/hypervisor/hypervisor.js";
import { encodeCpio, type CpioEntry } from "../src/image/cpio.js";
import { buildFloorInitrd, floorAnnouncement } from "../src/image/floor-image.js";
import { readGuestImage, type GuestImage } from "../src/image/guest-image.js";
import { toolsDiskSerial } from "../src/image/guest-init.js";
import { NodeProcessRunner } from "../src/platform/process.js";
import { RealHostProbe } from "../src/platform/probe.js";
import { makeBusyboxBundle } from "../src/tools/busybox-bundle.js";

export interface BootSample {
  readonly floorMs: number;
  readonly nodeStartGuestMs: number;
  readonly runFirstOutputMs: number;
  readonly hostStartMs: number;
  readonly bootToAgentMs: number;
  readonly createStartMs: number;
  readonly startToOutputMs: number;
  readonly agentReadyFromSpawnMs: number;
  /** Agent probe, guest clock: the kernel starts /init; /init is done (modules, tools disk); node starts. */
  readonly guestInitMs: number;
  readonly guestInitReadyMs: number;
  readonly guestNodeStartMs: number;
  /** Agent probe: the agent serves its port (guest clock), and the host sees that line (host clock). */
  readonly guestAgentServingMs: number;
  readonly probeSpawnToServingMs: number;
  /** 1 when the agent started from its startup snapshot, 0 when from its bundle. */
  readonly agentFromSnapshot: number;
}

const runner = new NodeProcessRunner();
const probe = new RealHostProbe(process.env["PATH"] ?? "/usr/bin:/bin");
const hypervisor = new QemuHypervisor({ runner, probe, logger: nullLogger }, { binary: "qemu-system-x86_64" });

/** The same VM shape `kata-ts run` uses (src/cli/vm-config.ts); the floor gets no tools disk. */
function vmConfig(work: string, kernelPath: string, initrdPath: string, name: string, toolsDisk?: string) {
  const readonlyDisks: ReadonlyDisk[] = toolsDisk === undefined ? [] : [{ path: toolsDisk, serial: toolsDiskSerial }];
  return {
    id: name,
    vmDir: path.join(work, "vm", name),
    machineType: "microvm" as const,
    vcpus: 1,
    memoryMiB: 2048,
    kernelPath,
    initrdPath,
    readonlyDisks,
    kernelParams: ["panic=1"],
  };
}

async function waitConsole(vm: Vm, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    // QEMU creates the console log once it starts: until then there is nothing to match.
    const text = (await readFile(vm.consoleLogPath, "utf8").catch(ignoreErrno("ENOENT"))) ?? "";
    const m = pattern.exec(text);
    if (m !== null) return m;
    await delay(5);
  }
  throw new Error(`console never matched ${String(pattern)}; tail: ${await vm.consoleTail(5)}`);
}

/** Floor: spawn to the busybox guest's announcement on its serial console. */
export async function floorOnce(work: string, image: GuestImage, floorInitrd: string): Promise<number> {
  const t0 = performance.now();
  const vm = await hypervisor.startVm(
    vmConfig(work, image.kernelPath, floorInitrd, "floor"),
    AbortSignal.timeout(60_000),
  );
  try {
    await waitConsole(vm, new RegExp(floorAnnouncement), 60_000);
    return performance.now() - t0;
  } finally {
    await vm.stop();
  }
}

/**
 * The guest image with the inittab replaced: after the real /init (modules, tools disk) it times
 * `node -e 0` on the guest clock instead of starting the agent, and powers off.
 */
async function nodeProbeInitrd(work: string, image: GuestImage): Promise<string> {
  const probe = `#!/bin/sh
read -r a _ </proc/uptime
/usr/bin/node -e 0
read -r b _ </proc/uptime
echo "kata-ts-bench: node $a $b" >/dev/console
poweroff -f
`;
  const inittab = "::sysinit:/bin/sh /kata-ts-bench-probe\n";
  const overlay: CpioEntry[] = [
    { kind: "file", path: "/kata-ts-bench-probe", mode: 0o755, source: { kind: "bytes", data: Buffer.from(probe) } },
    { kind: "file", path: "/etc/inittab", mode: 0o644, source: { kind: "bytes", data: Buffer.from(inittab) } },
  ];
  const out = path.join(work, "node-probe-initrd.img");
  // The kernel unpacks concatenated cpio archives in order; later entries replace earlier ones.
  await copyFile(image.initrdPath, out);
  await appendFile(out, encodeCpio(overlay));
  return out;
}

async function nodeStartOnce(work: string, image: GuestImage, initrd: string): Promise<number> {
  const vm = await hypervisor.startVm(
    vmConfig(work, image.kernelPath, initrd, "nodeprobe", image.toolsDiskPath),
    AbortSignal.timeout(60_000),
  );
  try {
    const m = await waitConsole(vm, /kata-ts-bench: node (\d+\.\d+) (\d+\.\d+)/, 90_000);
    return (Number(m[2]) - Number(m[1])) * 1000;
  } finally {
    await vm.stop();
  }
}

/** The real image booted without a sandbox: the guest's own timeline up to the agent serving its port. */
async function agentProbeOnce(
  work: string,
  image: GuestImage,
): Promise<
  Pick<
    BootSample,
    | "guestInitMs"
    | "guestInitReadyMs"
    | "guestNodeStartMs"
    | "guestAgentServingMs"
    | "probeSpawnToServingMs"
    | "agentFromSnapshot"
  >
> {
  const t0 = performance.now();
  const vm = await hypervisor.startVm(
    vmConfig(work, image.kernelPath, image.initrdPath, "agentprobe", image.toolsDiskPath),
    AbortSignal.timeout(60_000),
  );
  try {
    const serving = await waitConsole(
      vm,
      /"msg":"serving".*"startedFrom":"(\w+)".*"uptimeS":([\d.]+),"nodeUptimeS":([\d.]+)/,
      90_000,
    );
    const probeSpawnToServingMs = performance.now() - t0;
    const init = await waitConsole(vm, /kata-ts init: started at ([\d.]+)s, ready at ([\d.]+)s/, 1000);
    const uptime = Number(serving[2]) * 1000;
    return {
      guestInitMs: Number(init[1]) * 1000,
      guestInitReadyMs: Number(init[2]) * 1000,
      guestNodeStartMs: uptime - Number(serving[3]) * 1000,
      guestAgentServingMs: uptime,
      probeSpawnToServingMs,
      agentFromSnapshot: serving[1] === "snapshot" ? 1 : 0,
    };
  } finally {
    await vm.stop();
  }
}

async function runOnce(
  cli: string,
  bundle: string,
  root: string,
  n: number,
): Promise<
  Pick<
    BootSample,
    "runFirstOutputMs" | "hostStartMs" | "bootToAgentMs" | "createStartMs" | "startToOutputMs" | "agentReadyFromSpawnMs"
  >
> {
  const timingsFile = path.join(root, `timings-${n}.json`);
  const t0 = performance.now();
  let firstOutput = NaN;
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cli, ["--root", root, "run", "--bundle", bundle, "--timings-file", timingsFile, `bench-${n}`], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    child.stdout.once("data", () => {
      firstOutput = performance.now() - t0;
    });
    child.stdout.resume();
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`kata-ts run exited ${String(code)}`));
    });
  });
  // CAST: the CLI writes a flat object of phase name -> milliseconds (src/cli/commands/run.ts).
  const t = JSON.parse(await readFile(timingsFile, "utf8")) as Record<string, number>;
  const get = (k: string): number => t[k] ?? NaN;
  // The CLI's clock starts after Node has loaded it; the difference is part of "host start". Without a
  // firstOutput mark in the timings file the two clocks cannot be lined up: those rows read n/a.
  const cliStart = firstOutput - get("firstOutput");
  return {
    runFirstOutputMs: firstOutput,
    hostStartMs: cliStart + get("vmStarted"),
    bootToAgentMs: get("agentReady") - get("vmStarted"),
    createStartMs: get("containerStarted") - get("agentReady"),
    startToOutputMs: get("firstOutput") - get("containerStarted"),
    agentReadyFromSpawnMs: get("agentReady") - get("shareReady"),
  };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

export async function benchBoot(opts: { runs: number; cli: string; imageDir: string }): Promise<BootSample[]> {
  const image = await readGuestImage(opts.imageDir);
  if (image === undefined) throw new Error(`no guest image in ${opts.imageDir}: run kata-ts image build`);
  const work = path.join(tmpdir(), `kata-ts-bench-${process.pid}`);
  await mkdir(work, { recursive: true });
  try {
    const floorInitrd = await buildFloorInitrd({ runner }, work);
    const probeInitrd = await nodeProbeInitrd(work, image);
    const bundle = await makeBusyboxBundle({ runner }, { dir: path.join(work, "bundle"), args: ["echo", "ready"] });
    const root = path.join(work, "root");
    const samples: BootSample[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const floorMs = await floorOnce(work, image, floorInitrd);
      const nodeStartGuestMs = await nodeStartOnce(work, image, probeInitrd);
      const probe = await agentProbeOnce(work, image);
      const run = await runOnce(opts.cli, bundle, root, i);
      const s = { floorMs, nodeStartGuestMs, ...probe, ...run };
      samples.push(s);
      process.stderr.write(
        `boot run ${i + 1}/${opts.runs}: ${JSON.stringify(Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Math.round(v)])))}\n`,
      );
    }
    return samples;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export function renderBootReport(samples: readonly BootSample[], env: { date: string; host: string }): string {
  const med = (k: keyof BootSample): number => median(samples.map((s) => s[k]));
  const sec = (ms: number): string => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "n/a");
  const floor = med("floorMs");
  const nodeStart = med("nodeStartGuestMs");
  const ready = med("agentReadyFromSpawnMs");
  const target = 1.5 * floor + nodeStart;
  const rows = [
    ["kata-ts run start → container's first output", med("runFirstOutputMs")],
    ["  host start (node CLI, share dir, QEMU spawn + QMP)", med("hostStartMs")],
    ["  VM boot to agent ready", med("bootToAgentMs")],
    ["  container create + start", med("createStartMs")],
    ["  container start → first output", med("startToOutputMs")],
    ["QEMU spawn → agent ready", ready],
    ["floor: QEMU spawn → busybox initrd announces itself", floor],
    ["guest Node start (`node -e 0`, guest clock, first run after boot)", nodeStart],
  ] as const;
  const guestRows = [
    ["kernel starts /init", med("guestInitMs")],
    ["/init done (modules, tools disk), busybox init next", med("guestInitReadyMs")],
    ["node starts (the agent's process)", med("guestNodeStartMs")],
    ["agent serves its port", med("guestAgentServingMs")],
    ["(host clock: QEMU spawn → that line seen on the console)", med("probeSpawnToServingMs")],
  ] as const;
  return [
    `Measured ${env.date} on ${env.host}, ${samples.length} interleaved runs (floor, node probe, agent probe, kata-ts run), medians.`,
    "",
    "| phase | median |",
    "|---|---|",
    ...rows.map(([k, v]) => `| ${k} | ${sec(v)} |`),
    "",
    `Agent ready is **${(ready / floor).toFixed(2)}×** the floor. Target (1.5 × floor + guest Node start): ` +
      `${sec(target)}; measured ${sec(ready)} (${ready <= target ? "met" : `${sec(ready - target)} over`}).`,
    "",
    `Agent probe (the image booted without a sandbox), guest clock from boot; the agent started from its ` +
      `startup snapshot in ${samples.filter((s) => s.agentFromSnapshot === 1).length} of ${samples.length} boots:`,
    "",
    "| guest event | median |",
    "|---|---|",
    ...guestRows.map(([k, v]) => `| ${k} | ${sec(v)} |`),
  ].join("\n");
}

export async function writeBootResults(
  samples: readonly BootSample[],
  docPath: string,
  rawDir: string,
  host: string,
): Promise<void> {
  const date = new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC";
  await mkdir(rawDir, { recursive: true });
  await writeFile(path.join(rawDir, `boot-${Date.now()}.json`), JSON.stringify({ date, host, samples }, null, 2));
  const section = renderBootReport(samples, { date, host });
  const doc = (await readFile(docPath, "utf8").catch(ignoreErrno("ENOENT"))) ?? "# Benchmarks\n";
  const begin = "<!-- bench:boot:begin -->";
  const end = "<!-- bench:boot:end -->";
  const block = `${begin}\n${section}\n${end}`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  const next =
    i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n## Boot\n\n${block}\n`;
  await writeFile(docPath, next);
}
