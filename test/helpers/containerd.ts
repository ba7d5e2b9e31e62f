// A private containerd for integration tests: its own config, root, state and sockets under a temp
// directory, `containerd-shim-kata-ts-v2` on its PATH (a link to this build), the busybox image imported,
// and `ctr` pointed at it. Stopped (and its directories removed) by stop().

import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { delay } from "../../src/base/async.js";
import { NodeProcessRunner, type RunResult } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { writeOciImage } from "../../src/tools/oci-image.js";
import { repoRoot } from "./cli.js";
import { testImageDir } from "./requires.js";

export const testImageName = "docker.io/library/kata-ts-busybox:latest";
export const shimBinaryName = "containerd-shim-kata-ts-v2";

const runner = new NodeProcessRunner();

export interface TestContainerd {
  readonly dir: string;
  /** kata-ts's --root for the shims this containerd starts (KATA_TS_ROOT). */
  readonly kataRoot: string;
  readonly address: string;
  /** `ctr --address <ours> args`. */
  ctr(args: readonly string[], opts?: { timeoutMs?: number; input?: string }): Promise<RunResult>;
  /** containerd's own log so far. */
  log(): Promise<string>;
  /**
   * Kills containerd (SIGKILL: no shutdown of its own) and starts it again with the same config, state
   * and environment; the shims it started keep running, as on a node whose containerd crashed.
   */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts containerd (CRI disabled unless `cri`), imports the busybox test image, and returns it. */
export async function startContainerd(opts: { cri?: boolean } = {}): Promise<TestContainerd> {
  const dir = await mkdtemp(path.join(tmpdir(), "kata-ts-ctrd-"));
  const bin = path.join(dir, "bin");
  const kataRoot = path.join(dir, "kata");
  await mkdir(bin, { recursive: true });
  await mkdir(kataRoot, { recursive: true, mode: 0o700 });
  const shim = path.join(bin, shimBinaryName);
  await writeFile(
    shim,
    `#!/bin/sh\nexec ${process.execPath} ${path.join(repoRoot, "dist/src/cli/containerd-shim-main.js")} "$@"\n`,
  );
  await chmod(shim, 0o755);
  const address = path.join(dir, "containerd.sock");
  const config = path.join(dir, "config.toml");
  await writeFile(
    config,
    [
      "version = 2",
      `root = "${path.join(dir, "root")}"`,
      `state = "${path.join(dir, "state")}"`,
      ...(opts.cri === true ? [] : ['disabled_plugins = ["io.containerd.grpc.v1.cri"]']),
      "[grpc]",
      `  address = "${address}"`,
      "[ttrpc]",
      `  address = "${address}.ttrpc"`,
      "[debug]",
      '  level = "info"',
      "",
    ].join("\n"),
  );
  const logFile = path.join(dir, "containerd.log");
  let child!: ChildProcess;
  let exited!: Promise<void>;
  const launch = async (): Promise<void> => {
    const logFh = await open(logFile, "a");
    child = spawn("containerd", ["--config", config], {
      stdio: ["ignore", logFh.fd, logFh.fd],
      env: {
        ...process.env,
        PATH: `${bin}:${process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"}`,
        KATA_TS_ROOT: kataRoot,
        KATA_TS_IMAGE_DIR: testImageDir,
      },
    });
    await logFh.close();
    const c = child;
    exited = new Promise<void>((resolve) => {
      c.once("exit", () => {
        resolve();
      });
    });
  };
  await launch();
  const ctr: TestContainerd["ctr"] = (args, o = {}) =>
    runner.run("ctr", ["--address", address, ...args], {
      ...(o.input === undefined ? {} : { input: o.input }),
      signal: AbortSignal.timeout(o.timeoutMs ?? 240_000),
    });
  const stop = async (): Promise<void> => {
    child.kill("SIGTERM");
    await Promise.race([exited, delay(10_000)]);
    child.kill("SIGKILL");
    await exited;
    // A failed test can leave a task's mounts: detach them, deepest first, so the directory can go.
    const mounts = (await readFile("/proc/self/mountinfo", "utf8"))
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((m) => m.startsWith(`${dir}/`))
      .sort()
      .reverse();
    for (const m of mounts) await runner.run("umount", ["-l", m]);
    await rm(dir, { recursive: true, force: true });
  };
  const ready = async (): Promise<void> => {
    const end = Date.now() + 20_000;
    for (;;) {
      const v = await ctr(["version"], { timeoutMs: 5000 });
      if (v.code === 0) return;
      if (Date.now() > end || child.exitCode !== null) {
        throw new Error(`containerd did not start: ${await readFile(logFile, "utf8")}`);
      }
      await delay(200);
    }
  };
  const restart = async (): Promise<void> => {
    child.kill("SIGKILL");
    await exited;
    await launch();
    await ready();
  };
  try {
    await ready();
    const bundle = await makeBusyboxBundle({ runner }, { dir: path.join(dir, "image-src"), args: ["sh"] });
    const tarball = path.join(dir, "busybox-oci.tar");
    await writeOciImage({ runner }, { rootfs: path.join(bundle, "rootfs"), out: tarball, name: testImageName });
    const imported = await ctr(["images", "import", tarball]);
    if (imported.code !== 0) throw new Error(`ctr images import: ${imported.stderr}`);
  } catch (e) {
    await stop();
    throw e;
  }
  return { dir, kataRoot, address, ctr, log: () => readFile(logFile, "utf8"), restart, stop };
}
