// `npm run bench -- factory`: a sandbox from the VM template and one from the VM cache (a hit) against a
// direct (cold) boot, interleaved with the bare-VM floor and a clone in a CNI pod netns (the template's NIC given the pod's MAC and
// address: docs/factory.md#nics), then the host memory (sum of QEMU PSS) of a few idle sandboxes each way.
// Uses the configured VM (KATA_TS_IMAGE_DIR moves the image) with a [factory] section of its own.

import { spawn } from "node:child_process";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { ignoreErrno } from "../src/base/errors.js";
import { readGuestImage } from "../src/image/guest-image.js";
import { buildFloorInitrd } from "../src/image/floor-image.js";
import { NodeProcessRunner } from "../src/platform/process.js";
import { makeBusyboxBundle } from "../src/tools/busybox-bundle.js";
import { bridgeConflist, createPodNetns, removeBridgeNetwork, type CniConflist } from "../src/tools/cni-netns.js";
import { floorOnce, median } from "./boot.js";
import { ksmRunning, withKsmMerged } from "./ksm.js";
import { benchDate, pssKiB, writeRaw, writeSection } from "./report.js";

const runner = new NodeProcessRunner();

/** A clone in a CNI pod netns ("clone-net") runs from the template too. */
type RunKind = "cold" | "clone" | "clone-net" | "cache";

export interface FactoryRun {
  readonly kind: RunKind;
  /** CLI spawn → the container's first output byte. */
  readonly firstOutputMs: number;
  /** The CLI's own phases (run --timings-file). */
  readonly phases: Record<string, number>;
}

export interface FactoryResults {
  readonly initMs: number;
  readonly floorMs: readonly number[];
  readonly runs: readonly FactoryRun[];
  readonly sandboxes: number;
  /** Sum of the idle sandboxes' QEMU PSS, each way. */
  readonly pssMiB: Readonly<Record<IdleKind, number>>;
  /** Whether the host's ksmd was merging when the bench started (then pssMiB is after merging too). */
  readonly ksmOnHost: boolean | undefined;
  /** With --ksm: the same idle sandboxes after ksmd merged them, and how much it shared. */
  readonly ksm?: {
    readonly pssMiB: Readonly<Record<IdleKind, number>>;
    readonly sharingMiB: Readonly<Record<IdleKind, number>>;
  };
}

/** Idle sandboxes measured: cold boots, template clones, and cold boots with `densitySettings`. */
type IdleKind = "cold" | "clone" | "dense";

/**
 * The smallest settings a user has for a cold pod (docs/factory.md#memory-per-pod): guest RAM for
 * the guest itself (a container's limit is added to it), TCG's code cap, the free-page balloon.
 */
export const densitySettings = "default_memory = 512\ntcg_tb_size = 32\nreclaim_guest_freed_memory = true\n";

interface IdleMemory {
  readonly pssMiB: number;
  readonly ksm?: { readonly pssMiB: number; readonly sharingMiB: number };
}

interface Setup {
  readonly cli: string;
  readonly root: string;
  readonly configs: Readonly<Record<IdleKind | "cache", string>>;
}

function cliRun(s: Setup, cfg: string, args: readonly string[], stdout: "pipe" | "ignore"): ReturnType<typeof spawn> {
  return spawn(s.cli, ["--root", s.root, "--config", cfg, ...args], {
    stdio: ["ignore", stdout, "inherit"],
  });
}

async function cliOk(s: Setup, cfg: string, args: readonly string[]): Promise<void> {
  const child = cliRun(s, cfg, args, "ignore");
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", resolve);
  });
  if (code !== 0) throw new Error(`kata-ts ${args.join(" ")} exited ${String(code)}`);
}

async function runOnce(s: Setup, kind: RunKind, bundle: string, id: string): Promise<FactoryRun> {
  const timings = path.join(s.root, `timings-${id}.json`);
  const t0 = performance.now();
  let first = NaN;
  const cfg = s.configs[kind === "cold" || kind === "cache" ? kind : "clone"];
  const child = cliRun(s, cfg, ["run", "--bundle", bundle, "--timings-file", timings, id], "pipe");
  child.stdout?.once("data", () => {
    first = performance.now() - t0;
  });
  child.stdout?.resume();
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", resolve);
  });
  if (code !== 0) throw new Error(`kata-ts run (${kind}) exited ${String(code)}`);
  // CAST: the CLI writes a flat object of phase name -> milliseconds (src/cli/commands/run.ts).
  const phases = JSON.parse(await readFile(timings, "utf8")) as Record<string, number>;
  return { kind, firstOutputMs: first, phases };
}

/** A clone in a fresh CNI pod netns (one per run, as a kubelet makes one per sandbox), released after. */
async function netRunOnce(s: Setup, work: string, network: CniConflist, i: number): Promise<FactoryRun> {
  const id = `fbench-net-${i}`;
  const pod = await createPodNetns({ runner }, { network, name: `kata-ts-fbench-${process.pid}-${i}` });
  try {
    const bundle = await makeBusyboxBundle(
      { runner },
      {
        dir: path.join(work, id),
        args: ["echo", "ready"],
        edit: (spec) => {
          const namespaces = (spec.linux?.namespaces ?? []).filter((n) => n.type !== "network");
          spec.linux = { ...spec.linux, namespaces: [...namespaces, { type: "network", path: pod.nsPath }] };
        },
      },
    );
    return await runOnce(s, "clone-net", bundle, id);
  } finally {
    await pod.release();
  }
}

const cacheReadyTries = 300;

/** Waits until the VM cache has its VM ready (`factory status`: "1 ready"). */
async function cacheReady(s: Setup): Promise<void> {
  for (let waited = 0; waited < cacheReadyTries; waited++) {
    const child = spawn(s.cli, ["--root", s.root, "--config", s.configs.cache, "factory", "status"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    await new Promise((resolve) => child.once("close", resolve));
    if (out.includes(", 1 ready)")) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error("the VM cache did not get a VM ready within 300 s");
}

/** PIDs of QEMU processes whose arguments name `dir`. */
async function qemuPidsUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const argv = ((await readFile(`/proc/${e}/cmdline`, "utf8").catch(ignoreErrno("ENOENT", "ESRCH"))) ?? "").split(
      "\0",
    );
    if (path.basename(argv[0] ?? "").startsWith("qemu-system") && argv.some((a) => a.includes(dir))) pids.push(+e);
  }
  return pids;
}

/**
 * Starts `n` idle sandboxes, lets them settle, sums their QEMUs' PSS (and again after the host's KSM
 * merged them, with `ksm`), and deletes them.
 */
async function idlePss(s: Setup, kind: IdleKind, bundle: string, n: number, ksm: boolean): Promise<IdleMemory> {
  const ids = Array.from({ length: n }, (_, i) => `fbench-idle-${kind}-${i}`);
  const sum = async (): Promise<number> => {
    const pids = await qemuPidsUsing(s.root);
    if (pids.length !== n) throw new Error(`expected ${n} QEMU processes, found ${pids.length}`);
    let kib = 0;
    for (const pid of pids) kib += await pssKiB(pid);
    return kib / 1024;
  };
  try {
    for (const id of ids) await cliOk(s, s.configs[kind], ["run", "-d", "--bundle", bundle, id]);
    // Settle: the last guest finishes its start, pages the host has not yet seen are counted once.
    await new Promise((r) => setTimeout(r, 10_000));
    const pssMiB = await sum();
    if (!ksm) return { pssMiB };
    const merged = await withKsmMerged(sum);
    if (merged === undefined) throw new Error("--ksm: this host's kernel has no KSM (/sys/kernel/mm/ksm)");
    return { pssMiB, ksm: { pssMiB: merged.value, sharingMiB: merged.sharingMiB } };
  } finally {
    for (const id of ids) {
      await cliOk(s, s.configs[kind], ["delete", "--force", id]).catch((e: unknown) => {
        process.stderr.write(`bench: delete ${id}: ${String(e)}\n`);
      });
    }
  }
}

export async function benchFactory(opts: {
  runs: number;
  sandboxes: number;
  ksm: boolean;
  cli: string;
  imageDir: string;
}): Promise<FactoryResults> {
  const ksmOnHost = await ksmRunning();
  if (opts.ksm && ksmOnHost === undefined) throw new Error("--ksm: this host's kernel has no KSM (/sys/kernel/mm/ksm)");
  const image = await readGuestImage(opts.imageDir);
  if (image === undefined) throw new Error(`no guest image in ${opts.imageDir}: run kata-ts image build`);
  const work = path.join(tmpdir(), `kata-ts-bench-factory-${process.pid}`);
  const templatePath = `/run/kata-ts-bench-factory-${process.pid}/template`;
  await mkdir(work, { recursive: true });
  const root = path.join(work, "root");
  const cold = path.join(work, "cold.toml");
  const clone = path.join(work, "clone.toml");
  const cache = path.join(work, "cache.toml");
  // The cache's directory must be on --root's file system: both in `work`.
  await writeFile(cache, `[factory]\nvm_cache_number = 1\nvm_cache_endpoint = "${path.join(work, "cache.sock")}"\n`);
  await writeFile(cold, `[factory]\nenable_template = false\ntemplate_path = "${templatePath}"\n`);
  await writeFile(clone, `[factory]\nenable_template = true\ntemplate_path = "${templatePath}"\n`);
  const dense = path.join(work, "dense.toml");
  await writeFile(dense, `[factory]\nenable_template = false\n[hypervisor.qemu]\n${densitySettings}`);
  const s: Setup = { cli: opts.cli, root, configs: { cold, clone, cache, dense } };
  let server: ReturnType<typeof spawn> | undefined;
  const stopCache = async (): Promise<void> => {
    if (server === undefined) return;
    await cliOk(s, cache, ["factory", "destroy"]).catch((e: unknown) => {
      process.stderr.write(`bench: stop the VM cache: ${String(e)}\n`);
      server?.kill("SIGTERM");
    });
    server = undefined;
  };
  const bridge = `ktfb${process.pid % 100000}`;
  const netName = `kata-ts-fbench-${process.pid}`;
  const network = bridgeConflist({ name: netName, bridge, subnet: `10.198.${process.pid % 250}.0/24` });
  try {
    const floorInitrd = await buildFloorInitrd({ runner }, work);
    const bundle = await makeBusyboxBundle({ runner }, { dir: path.join(work, "bundle"), args: ["echo", "ready"] });
    const idleBundle = await makeBusyboxBundle({ runner }, { dir: path.join(work, "idle"), args: ["sleep", "3600"] });
    const t0 = performance.now();
    await cliOk(s, clone, ["factory", "init"]);
    const initMs = performance.now() - t0;
    server = cliRun(s, cache, ["factory", "init"], "ignore");
    const floorMs: number[] = [];
    const runs: FactoryRun[] = [];
    for (let i = 0; i < opts.runs; i++) {
      // A hit: one VM ready; its refill (one TCG boot) then runs during the hit itself, as it would in
      // use, and is waited for before the next measurement, so no other run shares the CPUs with it.
      await cacheReady(s);
      const hit = await runOnce(s, "cache", bundle, `fbench-cache-${i}`);
      runs.push(hit);
      process.stderr.write(`factory run ${i + 1}/${opts.runs} cache: ${Math.round(hit.firstOutputMs)} ms\n`);
      await cacheReady(s);
      floorMs.push(await floorOnce(work, image, floorInitrd));
      // Alternate which goes first, so neither always follows the floor's VM.
      for (const kind of i % 2 === 0 ? (["cold", "clone"] as const) : (["clone", "cold"] as const)) {
        const r = await runOnce(s, kind, bundle, `fbench-${kind}-${i}`);
        runs.push(r);
        process.stderr.write(`factory run ${i + 1}/${opts.runs} ${kind}: ${Math.round(r.firstOutputMs)} ms\n`);
      }
      const n = await netRunOnce(s, work, network, i);
      runs.push(n);
      process.stderr.write(`factory run ${i + 1}/${opts.runs} clone-net: ${Math.round(n.firstOutputMs)} ms\n`);
    }
    // Its idle VM would share the CPUs with the idle sandboxes measured next.
    await stopCache();
    // One kind after another: sandboxes of two kinds would share the CPUs while settling.
    const idle: Record<IdleKind, IdleMemory> = {
      cold: await idlePss(s, "cold", idleBundle, opts.sandboxes, opts.ksm),
      clone: await idlePss(s, "clone", idleBundle, opts.sandboxes, opts.ksm),
      dense: await idlePss(s, "dense", idleBundle, opts.sandboxes, opts.ksm),
    };
    const byKind = <T>(f: (m: IdleMemory) => T): Record<IdleKind, T> => ({
      cold: f(idle.cold),
      clone: f(idle.clone),
      dense: f(idle.dense),
    });
    const pssMiB = byKind((m) => m.pssMiB);
    const ksm = opts.ksm
      ? { pssMiB: byKind((m) => m.ksm?.pssMiB ?? NaN), sharingMiB: byKind((m) => m.ksm?.sharingMiB ?? NaN) }
      : undefined;
    return { initMs, floorMs, runs, sandboxes: opts.sandboxes, pssMiB, ksmOnHost, ...(ksm && { ksm }) };
  } finally {
    await stopCache();
    await cliOk(s, clone, ["factory", "destroy"]).catch((e: unknown) => {
      process.stderr.write(`bench: factory destroy: ${String(e)}\n`);
    });
    await removeBridgeNetwork({ runner }, { name: netName, bridge }).catch((e: unknown) => {
      process.stderr.write(`bench: remove CNI network: ${String(e)}\n`);
    });
    await rm(path.dirname(templatePath), { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}

function s(ms: number): string {
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "n/a";
}

export function renderFactoryReport(r: FactoryResults, env: { date: string; host: string }): string {
  const of = (kind: RunKind): readonly FactoryRun[] => r.runs.filter((x) => x.kind === kind);
  const med = (kind: RunKind, f: (x: FactoryRun) => number): number => median(of(kind).map(f));
  const phase =
    (a: string, b: string) =>
    (x: FactoryRun): number =>
      (x.phases[b] ?? NaN) - (x.phases[a] ?? NaN);
  const first = (x: FactoryRun): number => x.firstOutputMs;
  const coldFirst = med("cold", first);
  const cloneFirst = med("clone", first);
  const cacheFirst = med("cache", first);
  const rows: [string, (x: FactoryRun) => number][] = [
    ["kata-ts run start → container's first output", first],
    [
      "  the CLI's Node start, and the output's relay (not in the phases below)",
      (x) => x.firstOutputMs - (x.phases["firstOutput"] ?? NaN),
    ],
    ["  QEMU spawn → agent ready (shareReady → agentReady)", phase("shareReady", "agentReady")],
    [
      "  agent ready → sandbox created (network, CreateSandbox; a clone's reseed and clock alongside)",
      phase("agentReady", "sandboxCreated"),
    ],
    ["    clone: reseed + clock (agentReady → cloneRefreshed)", phase("agentReady", "cloneRefreshed")],
    ["    guest network: UpdateInterface, UpdateRoutes (→ networkReady)", phase("agentReady", "networkReady")],
    [
      "  sandbox created → container started (CreateContainer, StartContainer)",
      phase("sandboxCreated", "containerStarted"),
    ],
    ["  container started → its first output", phase("containerStarted", "firstOutput")],
  ];
  const lines = [
    `Measured ${env.date} on ${env.host}, ${of("cold").length} interleaved rounds (cache hit, floor, cold, clone; the order of cold and clone alternates; then a clone in a CNI pod netns), medians. Template made by \`kata-ts factory init\` (with its warm-up) in ${s(r.initMs)}; VM cache of 1 (\`vm_cache_number = 1\`), refilled before each measurement.`,
    "",
    "| | cold boot | template clone | clone in a CNI pod netns | cache hit |",
    "|---|---|---|---|---|",
    ...rows.map(
      ([name, f]) =>
        `| ${name} | ${s(med("cold", f))} | ${s(med("clone", f))} | ${s(med("clone-net", f))} | ${s(med("cache", f))} |`,
    ),
    `| bare-VM floor (QEMU spawn → busybox /init's line) | ${s(median(r.floorMs))} | | | |`,
    "",
    `Start → first output, against the cold boot: clone **${(cloneFirst / coldFirst).toFixed(2)}×**, cache hit **${(cacheFirst / coldFirst).toFixed(2)}×**.`,
    "",
    ...memoryTable(r),
  ];
  return lines.join("\n");
}

function memoryTable(r: FactoryResults): string[] {
  const cell = (mib: number): string => `${mib.toFixed(0)} MiB (${(mib / r.sandboxes).toFixed(0)} a pod)`;
  const row = (name: string, pss: Readonly<Record<IdleKind, number>>): string =>
    `| ${name} | ${cell(pss.cold)} | ${cell(pss.clone)} (${((100 * pss.clone) / pss.cold).toFixed(0)} % of cold) | ${cell(pss.dense)} |`;
  return [
    `Host memory of ${r.sandboxes} idle sandboxes (\`sleep\`), sum of their QEMUs' PSS 10 s after the last start` +
      `${r.ksmOnHost === true ? " (the host's KSM was on throughout)" : ""}. The density settings: ` +
      `\`${densitySettings.trim().split("\n").join("`, `")}\` ([factory.md](factory.md#memory-per-pod)).`,
    "",
    "| | cold boots | template clones | cold boots, density settings |",
    "|---|---|---|---|",
    row("as started", r.pssMiB),
    ...(r.ksm === undefined
      ? []
      : [
          row("after the host's KSM merged them (`--ksm`)", r.ksm.pssMiB),
          `| ksmd's pages_sharing | ${r.ksm.sharingMiB.cold.toFixed(0)} MiB | ${r.ksm.sharingMiB.clone.toFixed(0)} MiB | ${r.ksm.sharingMiB.dense.toFixed(0)} MiB |`,
        ]),
  ];
}

export async function writeFactoryResults(r: FactoryResults, doc: string, raw: string, host: string): Promise<string> {
  await writeRaw(raw, "factory", r);
  const report = renderFactoryReport(r, { date: benchDate(), host });
  await writeSection(doc, "factory", "Factory", report);
  return report;
}
