// `npm run bench -- ctr`: kata-ts as a containerd runtime, against runc under the same containerd and the
// bare-VM floor, interleaved per round:
// - `ctr run --rm` of the busybox image running `true`, to exit: runc (io.containerd.runc.v2) and kata-ts;
//   the floor is QEMU spawn → a busybox initrd announcing itself (bench/boot.ts), the least any VM start costs;
// - the shim binary's own actions, run by containerd once per container: `-v` and `delete` of an id it
//   does not know, against a bare `node -e 0`;
// - host memory of an idle busybox pod: PSS of the per-sandbox service and of QEMU.

import { mkdir, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { delay } from "../src/base/async.js";
import { buildFloorInitrd } from "../src/image/floor-image.js";
import { readGuestImage } from "../src/image/guest-image.js";
import { NodeProcessRunner } from "../src/platform/process.js";
import { startContainerd, testImageName, type TestContainerd } from "../test/helpers/containerd.js";
import { savedPids } from "../test/helpers/vm-world.js";
import { floorOnce, median } from "./boot.js";
import { benchDate, pssKiB, writeRaw, writeSection } from "./report.js";

export interface CtrRound {
  readonly runcMs: number;
  readonly kataMs: number;
  readonly floorMs: number;
  readonly load1: number;
}

export interface ShimCost {
  readonly nodeMs: number;
  readonly versionMs: number;
  readonly deleteUnknownMs: number;
}

export interface PodMemory {
  readonly servicePssKiB: number;
  readonly qemuPssKiB: number;
}

export interface CtrResults {
  readonly rounds: CtrRound[];
  readonly shim: ShimCost[];
  readonly memory: PodMemory;
}

const runner = new NodeProcessRunner();

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function ctrRun(c: TestContainerd, runtime: string, id: string): Promise<void> {
  const r = await c.ctr(["run", "--rm", "--runtime", runtime, testImageName, id, "true"]);
  if (r.code !== 0) throw new Error(`ctr run --runtime ${runtime}: exit ${r.code}: ${r.stderr}`);
}

async function shimCost(c: TestContainerd, work: string): Promise<ShimCost> {
  const shim = path.join(c.dir, "bin", "containerd-shim-kata-ts-v2");
  const env = { ...process.env, KATA_TS_ROOT: c.kataRoot };
  const run = async (file: string, args: string[]): Promise<number> =>
    timed(async () => {
      const r = await runner.run(file, args, { cwd: work, env });
      if (r.code !== 0) throw new Error(`${file} ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
    });
  return {
    nodeMs: await run(process.execPath, ["-e", "0"]),
    versionMs: await run(shim, ["-v"]),
    deleteUnknownMs: await run(shim, ["-namespace", "bench", "-id", "unknown1", "-bundle", work, "delete"]),
  };
}

async function podMemory(c: TestContainerd): Promise<PodMemory> {
  const id = `benchmem${process.pid}`;
  const r = await c.ctr(["run", "-d", "--runtime", "io.containerd.kata-ts.v2", testImageName, id, "sleep", "600"]);
  if (r.code !== 0) throw new Error(`ctr run -d: ${r.stderr}`);
  try {
    const { servicePid, vmPid } = await savedPids(c.kataRoot, id);
    // Let boot-time work settle (page cache, the agent's start) before reading an idle pod's cost.
    await delay(10_000);
    return { servicePssKiB: await pssKiB(servicePid), qemuPssKiB: await pssKiB(vmPid) };
  } finally {
    await c.ctr(["task", "kill", "-s", "SIGKILL", id]);
    for (let i = 0; i < 50; i++) {
      if ((await c.ctr(["task", "delete", id])).code === 0) break;
      await delay(200);
    }
    await c.ctr(["containers", "delete", id]);
  }
}

export async function benchCtr(opts: { runs: number; imageDir: string }): Promise<CtrResults> {
  const image = await readGuestImage(opts.imageDir);
  if (image === undefined) throw new Error(`no guest image in ${opts.imageDir}: run kata-ts image build`);
  const work = path.join(tmpdir(), `kata-ts-bench-ctr-${process.pid}`);
  await mkdir(work, { recursive: true });
  const c = await startContainerd();
  try {
    const floorInitrd = await buildFloorInitrd({ runner }, work);
    // One unmeasured run each: containerd unpacks the image into its snapshotter on first use.
    await ctrRun(c, "io.containerd.runc.v2", "warmrunc");
    await ctrRun(c, "io.containerd.kata-ts.v2", "warmkata");
    const rounds: CtrRound[] = [];
    const shim: ShimCost[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const runcMs = await timed(() => ctrRun(c, "io.containerd.runc.v2", `runc${i}`));
      const kataMs = await timed(() => ctrRun(c, "io.containerd.kata-ts.v2", `kata${i}`));
      const floorMs = await floorOnce(work, image, floorInitrd);
      rounds.push({ runcMs, kataMs, floorMs, load1: loadavg()[0] ?? NaN });
      for (let j = 0; j < 3; j++) shim.push(await shimCost(c, work));
      process.stderr.write(`ctr round ${i + 1}/${opts.runs}: ${JSON.stringify(rounds.at(-1))}\n`);
    }
    const memory = await podMemory(c);
    return { rounds, shim, memory };
  } finally {
    await c.stop();
    await rm(work, { recursive: true, force: true });
  }
}

const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const mb = (kib: number): string => `${(kib / 1024).toFixed(0)} MB`;

export function renderCtrReport(r: CtrResults, env: { date: string; host: string }): string {
  const med = (k: keyof CtrRound): number => median(r.rounds.map((x) => x[k]));
  const shim = (k: keyof ShimCost): number => median(r.shim.map((x) => x[k]));
  const kata = med("kataMs");
  const floor = med("floorMs");
  return [
    `Measured ${env.date} on ${env.host}, ${r.rounds.length} interleaved rounds (runc, kata-ts, floor), medians; ` +
      `load average ${median(r.rounds.map((x) => x.load1)).toFixed(1)}. Debian's containerd 1.6, a private instance.`,
    "",
    "| `ctr run --rm busybox true`, to exit | median |",
    "|---|---|",
    `| runc (io.containerd.runc.v2) | ${s(med("runcMs"))} |`,
    `| kata-ts (io.containerd.kata-ts.v2) | ${s(kata)} |`,
    `| floor: a bare VM boot (QEMU spawn → busybox initrd) | ${s(floor)} |`,
    "",
    `kata-ts is ${(kata / med("runcMs")).toFixed(1)}× runc and ${(kata / floor).toFixed(1)}× the floor.`,
    "",
    `| the shim binary, once per container (${r.shim.length} samples) | median |`,
    "|---|---|",
    `| \`node -e 0\` (a bare Node start) | ${s(shim("nodeMs"))} |`,
    `| \`containerd-shim-kata-ts-v2 -v\` | ${s(shim("versionMs"))} |`,
    `| \`containerd-shim-kata-ts-v2 delete\` of an unknown id | ${s(shim("deleteUnknownMs"))} |`,
    "",
    "| host memory of an idle busybox pod (PSS) | |",
    "|---|---|",
    `| per-sandbox service (Node) | ${mb(r.memory.servicePssKiB)} |`,
    `| QEMU | ${mb(r.memory.qemuPssKiB)} |`,
    `| total | ${mb(r.memory.servicePssKiB + r.memory.qemuPssKiB)} |`,
  ].join("\n");
}

export async function writeCtrResults(r: CtrResults, doc: string, raw: string, host: string): Promise<string> {
  const date = benchDate();
  await writeRaw(raw, "ctr", { date, host, ...r });
  const section = renderCtrReport(r, { date, host });
  await writeSection(doc, "ctr", "containerd (ctr)", section);
  return section;
}
