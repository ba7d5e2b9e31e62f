// `npm run bench -- podman`: `podman run --rm busybox true` to exit, with kata-ts as podman's runtime and
// with runc, interleaved per round (a private podman: test/helpers/podman.ts). podman's own work (storage,
// conmon, cleanup) is in both; the difference is the runtime's.

import { loadavg } from "node:os";
import { makeRunRoot, removeRunRoot } from "../test/helpers/cli.js";
import { podmanImage, startPodman, type TestPodman } from "../test/helpers/podman.js";
import { median } from "./boot.js";
import { benchDate, writeRaw, writeSection } from "./report.js";

export interface PodmanRound {
  readonly runcMs: number;
  readonly kataMs: number;
  readonly load1: number;
}

async function timedRun(p: TestPodman, runtime: string | undefined, extra: string[]): Promise<number> {
  const t0 = performance.now();
  const r = await p.podman(["run", "--rm", "--network", "none", ...extra, podmanImage, "true"], {
    ...(runtime === undefined ? {} : { runtime }),
  });
  if (r.code !== 0) throw new Error(`podman run --runtime ${runtime ?? "kata-ts"}: exit ${r.code}: ${r.stderr}`);
  return performance.now() - t0;
}

export async function benchPodman(opts: { runs: number }): Promise<PodmanRound[]> {
  const root = await makeRunRoot();
  const p = await startPodman(root);
  try {
    // podman asks runc for RLIMITs (NOFILE 1048576, NPROC) above what a container host may allow (runc then
    // fails to set them): small ones instead, which `true` does not notice. kata-ts applies rlimits in the VM.
    const runcFlags = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"];
    // One unmeasured run each: the first container of a fresh storage pays for its layer.
    await timedRun(p, "runc", runcFlags);
    await timedRun(p, undefined, []);
    const rounds: PodmanRound[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const runcMs = await timedRun(p, "runc", runcFlags);
      const kataMs = await timedRun(p, undefined, []);
      rounds.push({ runcMs, kataMs, load1: loadavg()[0] ?? NaN });
      process.stderr.write(`podman round ${i + 1}/${opts.runs}: ${JSON.stringify(rounds.at(-1))}\n`);
    }
    return rounds;
  } finally {
    await p.close();
    await removeRunRoot(root);
  }
}

const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

export function renderPodmanReport(rounds: readonly PodmanRound[], env: { date: string; host: string }): string {
  const runc = median(rounds.map((r) => r.runcMs));
  const kata = median(rounds.map((r) => r.kataMs));
  return [
    `Measured ${env.date} on ${env.host}, ${rounds.length} interleaved rounds (runc, kata-ts), medians; ` +
      `load average ${median(rounds.map((r) => r.load1)).toFixed(1)}. Debian's podman 4.3 and conmon 2.1, ` +
      "private storage (vfs), `--network none`.",
    "",
    "| `podman run --rm busybox true`, to exit | median |",
    "|---|---|",
    `| runc | ${s(runc)} |`,
    `| kata-ts | ${s(kata)} |`,
    "",
    `kata-ts is ${(kata / runc).toFixed(1)}× runc (a VM boot per container, TCG on this host when it has no KVM).`,
  ].join("\n");
}

export async function writePodmanResults(
  rounds: PodmanRound[],
  doc: string,
  raw: string,
  host: string,
): Promise<string> {
  const date = benchDate();
  await writeRaw(raw, "podman", { date, host, rounds });
  const section = renderPodmanReport(rounds, { date, host });
  await writeSection(doc, "podman", "podman (conmon)", section);
  return section;
}
