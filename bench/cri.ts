// `npm run bench -- cri`: the kubelet's calls through containerd 1.6's CRI plugin, kata-ts's runtime
// handler against runc's, interleaved per round (a private containerd, the CNI bridge, the busybox image):
// - RunPodSandbox → the first container running (RunPodSandbox, CreateContainer, StartContainer);
// - a second container in the running pod (CreateContainer + StartContainer);
// - ExecSync (`true`) in it: the first, then five more (a liveness probe's steady state);
// - teardown (StopPodSandbox over the running containers, RemovePodSandbox).
// The issue's targets under TCG: a second container ≤ 0.6 s and an ExecSync ≤ 0.4 s at the median.

import { randomUUID } from "node:crypto";
import { mkdir, rmdir } from "node:fs/promises";
import { loadavg } from "node:os";
import path from "node:path";
import { ignoreErrno, messageOf } from "../src/base/errors.js";
import { CriClient } from "../src/tools/cri-client.js";
import { kubeletContainerConfig, kubeletSandboxConfig, type KubePod } from "../src/tools/cri-pod.js";
import { kataHandler, runcHandler, startContainerd, testImageName } from "../test/helpers/containerd.js";
import { median } from "./boot.js";
import { benchDate, writeRaw, writeSection } from "./report.js";

export interface CriSample {
  readonly handler: string;
  readonly podToFirstRunningMs: number;
  readonly secondContainerMs: number;
  /** The first ExecSync in the new container. */
  readonly execSyncMs: number;
  /** The median of the next ones (a probe's steady state). */
  readonly execSyncAgainMs: number;
  readonly teardownMs: number;
  readonly load1: number;
}

const untilTerm = "trap 'exit 0' TERM; sleep 2147483647 & wait";
const cgroupParent = `/kata-ts-bench-${process.pid}`;

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, performance.now() - t0];
}

async function podOnce(cri: CriClient, dir: string, handler: string, n: number): Promise<CriSample> {
  const pod: KubePod = {
    name: `bench-${n}`,
    namespace: "default",
    uid: randomUUID(),
    kubeletRoot: path.join(dir, "kubelet"),
    logRoot: path.join(dir, "pods-log"),
    cgroupParent,
  };
  await mkdir(pod.logRoot, { recursive: true });
  const sandbox = kubeletSandboxConfig(pod);
  const container = (name: string): ReturnType<typeof kubeletContainerConfig> =>
    kubeletContainerConfig(pod, { name, image: testImageName, command: ["sh", "-c", untilTerm] });
  const [podId, podToFirstRunningMs] = await timed(async () => {
    const id = await cri.runPodSandbox(sandbox, handler);
    const c = await cri.createContainer(id, container("first"), sandbox);
    await cri.startContainer(c);
    return id;
  });
  try {
    const [second, secondContainerMs] = await timed(async () => {
      const c = await cri.createContainer(podId, container("second"), sandbox);
      await cri.startContainer(c);
      return c;
    });
    const execTrue = async (): Promise<number> => {
      const [exec, ms] = await timed(() => cri.execSync(second, ["true"], 30));
      if (exec.exitCode !== 0) throw new Error(`ExecSync true: exit ${exec.exitCode}`);
      return ms;
    };
    const execSyncMs = await execTrue();
    const again: number[] = [];
    for (let i = 0; i < 5; i++) again.push(await execTrue());
    const execSyncAgainMs = median(again);
    const [, teardownMs] = await timed(async () => {
      await cri.stopPodSandbox(podId);
      await cri.removePodSandbox(podId);
    });
    return {
      handler,
      podToFirstRunningMs,
      secondContainerMs,
      execSyncMs,
      execSyncAgainMs,
      teardownMs,
      load1: loadavg()[0] ?? NaN,
    };
  } catch (e) {
    // The measurement failed: still take the pod down, and report the first failure.
    await cri
      .stopPodSandbox(podId)
      .then(() => cri.removePodSandbox(podId))
      .catch((undo: unknown) => {
        process.stderr.write(`cri: tearing down pod ${podId} after a failure: ${messageOf(undo)}\n`);
      });
    throw e;
  }
}

export async function benchCri(opts: { runs: number }): Promise<CriSample[]> {
  const ctrd = await startContainerd({ cri: true });
  const cri = new CriClient(ctrd.address);
  try {
    // Unmeasured: containerd unpacks the images into its snapshotter on first use.
    await podOnce(cri, ctrd.dir, runcHandler, -1);
    await podOnce(cri, ctrd.dir, kataHandler, -2);
    const samples: CriSample[] = [];
    for (let i = 0; i < opts.runs; i++) {
      for (const handler of [runcHandler, kataHandler]) {
        const s = await podOnce(cri, ctrd.dir, handler, i);
        samples.push(s);
        process.stderr.write(`cri round ${i + 1}/${opts.runs} ${handler}: ${JSON.stringify(s)}\n`);
      }
    }
    return samples;
  } finally {
    cri.close();
    await ctrd.stop();
    // The kubelet's cgroup parent: runc and kata-ts make it when missing and leave it (empty).
    for (const controller of [
      "blkio",
      "cpu",
      "cpuacct",
      "cpuset",
      "devices",
      "freezer",
      "memory",
      "pids",
      "systemd",
      "unified",
    ]) {
      await rmdir(path.join("/sys/fs/cgroup", controller, cgroupParent)).catch(ignoreErrno("ENOENT", "ENOTDIR"));
    }
  }
}

const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

export function renderCriReport(samples: readonly CriSample[], env: { date: string; host: string }): string {
  const med = (handler: string, k: keyof Omit<CriSample, "handler">): number =>
    median(samples.filter((x) => x.handler === handler).map((x) => x[k]));
  const row = (label: string, k: keyof Omit<CriSample, "handler">, target?: number): string =>
    `| ${label} | ${s(med(runcHandler, k))} | ${s(med(kataHandler, k))} | ${target === undefined ? "" : `≤ ${s(target)}`} |`;
  const rounds = samples.filter((x) => x.handler === kataHandler).length;
  return [
    `Measured ${env.date} on ${env.host}, ${rounds} interleaved rounds (runc, kata-ts), medians; load average ` +
      `${median(samples.map((x) => x.load1)).toFixed(1)}. Debian's containerd 1.6 CRI plugin, a private instance, ` +
      "the CNI bridge, a kubelet-shaped pod (src/tools/cri-pod.ts).",
    "",
    "| CRI | runc | kata-ts | target (TCG) |",
    "|---|---|---|---|",
    row("RunPodSandbox → first container running", "podToFirstRunningMs"),
    row("a second container in a running pod (Create + Start)", "secondContainerMs", 600),
    row("ExecSync `true`, the first in a new container", "execSyncMs"),
    row("ExecSync `true`, the next five (their median: a probe's steady state)", "execSyncAgainMs", 400),
    row("StopPodSandbox + RemovePodSandbox (2 containers running)", "teardownMs"),
  ].join("\n");
}

export async function writeCriResults(samples: CriSample[], doc: string, raw: string, host: string): Promise<string> {
  const date = benchDate();
  await writeRaw(raw, "cri", { date, host, samples });
  const section = renderCriReport(samples, { date, host });
  await writeSection(doc, "cri", "Kubernetes (CRI)", section);
  return section;
}
