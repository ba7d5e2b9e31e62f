// A private podman for tests and benchmarks: its own storage (vfs), run and tmp directories, cgroupfs and
// file events (no systemd here), the tests' busybox imported as a local image (no registry), and kata-ts
// as its runtime through a wrapper that adds our global flags to every call podman makes.

import { execFile } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { NodeProcessRunner, runChecked } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { cliPath } from "./cli.js";
import { testImageDir } from "./requires.js";

export const podmanImage = "localhost/kata-ts-test-busybox:latest";

export interface PodmanResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface TestPodman {
  /** The work directory (storage, the runtime wrapper, kata-ts's log in kata.log). */
  readonly dir: string;
  /** The kata-ts wrapper podman runs (`--runtime`). */
  readonly kataRuntime: string;
  /** podman's global flags for the private storage, with `--runtime` kata-ts (for a command line of one's own). */
  readonly baseArgs: readonly string[];
  /** podman with the private storage; `runtime` (a path or name) replaces kata-ts for this call. */
  podman(args: readonly string[], opts?: { timeoutMs?: number; runtime?: string }): Promise<PodmanResult>;
  /** Removes every container and the private storage. */
  close(): Promise<void>;
}

export async function startPodman(kataRoot: string): Promise<TestPodman> {
  const runner = new NodeProcessRunner();
  const dir = await mkdtemp(path.join(tmpdir(), "kata-ts-podman-"));
  const kataRuntime = path.join(dir, "kata-ts");
  await writeFile(
    kataRuntime,
    `#!/bin/sh\nexec env KATA_TS_IMAGE_DIR=${testImageDir} ${process.execPath} ${cliPath} --root ${kataRoot} ` +
      `--log ${path.join(dir, "kata.log")} "$@"\n`,
  );
  await chmod(kataRuntime, 0o755);
  const base = [
    ...["--root", path.join(dir, "storage"), "--runroot", path.join(dir, "runroot")],
    ...["--tmpdir", path.join(dir, "tmp"), "--storage-driver", "vfs"],
    ...["--cgroup-manager", "cgroupfs", "--events-backend", "file"],
  ];
  const podman: TestPodman["podman"] = (args, opts = {}) =>
    new Promise((resolve) => {
      execFile(
        "podman",
        [...base, "--runtime", opts.runtime ?? kataRuntime, ...args],
        { timeout: opts.timeoutMs ?? 300_000, killSignal: "SIGKILL", maxBuffer: 1 << 20 },
        (e, stdout, stderr) => {
          resolve({ code: e === null ? 0 : typeof e.code === "number" ? e.code : -1, stdout, stderr });
        },
      );
    });
  const bundle = await makeBusyboxBundle({ runner }, { dir: path.join(dir, "bundle"), args: ["sh"] });
  const tar = path.join(dir, "busybox.tar");
  await runChecked(runner, "tar", ["-C", path.join(bundle, "rootfs"), "-cf", tar, "."]);
  const imported = await podman(["import", "--change", 'CMD ["/bin/sh"]', tar, podmanImage], { timeoutMs: 120_000 });
  if (imported.code !== 0) throw new Error(`podman import: ${imported.stderr}`);
  return {
    dir,
    kataRuntime,
    baseArgs: [...base, "--runtime", kataRuntime],
    podman,
    async close() {
      await podman(["rm", "--all", "--force"], { timeoutMs: 120_000 });
      // conmon's `podman container cleanup` of a `run --rm` may still be writing in the storage.
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 500 });
    },
  };
}
