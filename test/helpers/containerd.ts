// A private containerd for integration tests: its own config, root, state and sockets under a temp
// directory, `containerd-shim-kata-ts-v2` on its PATH (a link to this build), the busybox image imported,
// and `ctr` pointed at it. Stopped (and its directories removed) by stop().
//
// With `cri`, the CRI plugin is on, as a kubelet's node has it: runtime handlers `kata-ts` and `runc`,
// a sandbox ("pause") image built from busybox, a private CNI bridge network (its own bridge, subnet and
// conf dir), and pod network namespaces under containerd's state dir (netns_mounts_under_state_dir)
// instead of the host's /var/run/netns, so that a leak check sees only this containerd's.

import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { delay } from "../../src/base/async.js";
import { NodeProcessRunner, type RunResult } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { bridgeConflist, hostLocalDataDir } from "../../src/tools/cni-netns.js";
import { writeOciImage } from "../../src/tools/oci-image.js";
import { repoRoot } from "./cli.js";
import { testImageDir } from "./requires.js";

export const testImageName = "docker.io/library/kata-ts-busybox:latest";
export const shimBinaryName = "containerd-shim-kata-ts-v2";
/** The CRI plugin's sandbox_image: busybox whose init sleeps until SIGTERM or SIGKILL. */
export const sandboxImageName = "docker.io/library/kata-ts-pause:latest";
/** The CRI runtime handlers the config names (RunPodSandboxRequest.runtime_handler). */
export const kataHandler = "kata-ts";
export const runcHandler = "runc";
/** The namespace the CRI plugin keeps its images and containers in. */
export const criNamespace = "k8s.io";
/** pid 1 of a pid namespace ignores signals it has no handler for: trap TERM so that it does end. */
const sandboxCmd = ["sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"];

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
  /** Set when started with `cri`. */
  readonly cri: TestCri | undefined;
  stop(): Promise<void>;
}

export interface TestCri {
  /** The CNI network the CRI plugin gives pods: bridge, subnet, its gateway (the bridge's address). */
  readonly network: {
    readonly name: string;
    readonly bridge: string;
    readonly subnet: string;
    readonly gateway: string;
  };
  /** Where the CRI plugin mounts pod network namespaces (cni-<uuid>). */
  readonly netnsDir: string;
  /** The CRI plugin's root (sandboxes/<id>/hosts, resolv.conf, hostname) and state (shm) directories. */
  readonly root: string;
  readonly state: string;
}

/** A CNI network per containerd: 10.199.<pid % 256>.0/24 on bridge `kcri<pid>` (apart from test/helpers/cni.ts's). */
function criNetwork(): TestCri["network"] {
  const third = process.pid % 256;
  return {
    name: `kata-ts-cri-${process.pid}`,
    bridge: `kcri${process.pid}`.slice(0, 15),
    subnet: `10.199.${third}.0/24`,
    gateway: `10.199.${third}.1`,
  };
}

function criConfig(cniConfDir: string): string[] {
  const p = 'plugins."io.containerd.grpc.v1.cri"';
  return [
    `[${p}]`,
    `  sandbox_image = "${sandboxImageName}"`,
    "  netns_mounts_under_state_dir = true",
    // The pause container gets oom_score_adj -998 and runc's init fails on a host that refuses a negative
    // value (EACCES here: "nsexec: failed to update /proc/self/oom_score_adj"); clamp to containerd's own.
    "  restrict_oom_score_adj = true",
    // Port 0: each private containerd's streaming server (exec/attach URLs) gets its own port.
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    `[${p}.cni]`,
    '  bin_dir = "/usr/lib/cni"',
    `  conf_dir = "${cniConfDir}"`,
    "  max_conf_num = 1",
    `[${p}.containerd]`,
    `  default_runtime_name = "${runcHandler}"`,
    `[${p}.containerd.runtimes.${runcHandler}]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${p}.containerd.runtimes.${kataHandler}]`,
    '  runtime_type = "io.containerd.kata-ts.v2"',
  ];
}

/** Starts containerd (CRI disabled unless `cri`), imports the busybox test image, and returns it. */
/** `debug`: containerd logs at debug level, and so starts the shims with -debug (their log follows). */
export async function startContainerd(opts: { cri?: boolean; debug?: boolean } = {}): Promise<TestContainerd> {
  const dir = await mkdtemp(path.join(tmpdir(), "kata-ts-ctrd-"));
  const bin = path.join(dir, "bin");
  // CRI's ids are 64 hex characters and kata-ts's sockets are <root>/vm/<id>/<name>.sock: a root under a
  // mkdtemp in /tmp leaves too little of a unix socket path's 107 bytes. Kata's own root is as short (/run/vc).
  const kataRoot = opts.cri === true ? await mkdtemp("/run/kts-") : path.join(dir, "kata");
  await mkdir(bin, { recursive: true });
  await mkdir(kataRoot, { recursive: true, mode: 0o700 });
  const shim = path.join(bin, shimBinaryName);
  await writeFile(
    shim,
    // The launcher a real install links: from the host's startup snapshot when the build made one.
    `#!/bin/sh\nexec ${path.join(repoRoot, "bin", shimBinaryName)} "$@"\n`,
  );
  await chmod(shim, 0o755);
  const address = path.join(dir, "containerd.sock");
  const config = path.join(dir, "config.toml");
  const cniConfDir = path.join(dir, "cni");
  const network = criNetwork();
  const cri: TestCri | undefined =
    opts.cri === true
      ? {
          network,
          netnsDir: path.join(dir, "state", "io.containerd.grpc.v1.cri", "netns"),
          root: path.join(dir, "root", "io.containerd.grpc.v1.cri"),
          state: path.join(dir, "state", "io.containerd.grpc.v1.cri"),
        }
      : undefined;
  if (cri !== undefined) {
    await mkdir(cniConfDir, { recursive: true });
    await writeFile(
      path.join(cniConfDir, "10-kata-ts-test.conflist"),
      JSON.stringify(bridgeConflist({ name: network.name, bridge: network.bridge, subnet: network.subnet })),
    );
  }
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
      `  level = "${opts.debug === true ? "debug" : "info"}"`,
      ...(cri === undefined ? [] : ["[plugins]", ...criConfig(cniConfDir)]),
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
      .filter((m) => m.startsWith(`${dir}/`) || m.startsWith(`${kataRoot}/`))
      .sort()
      .reverse();
    for (const m of mounts) await runner.run("umount", ["-l", m]);
    await rm(dir, { recursive: true, force: true });
    await rm(kataRoot, { recursive: true, force: true });
    if (cri !== undefined) {
      // A pod not removed keeps host-local's reservation and the bridge: both are this containerd's only.
      await rm(path.join(hostLocalDataDir, network.name), { recursive: true, force: true });
      await runner.run("ip", ["link", "delete", network.bridge, "type", "bridge"]);
    }
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
    if (cri !== undefined) {
      const pause = path.join(dir, "pause-oci.tar");
      await writeOciImage(
        { runner },
        { rootfs: path.join(bundle, "rootfs"), out: pause, name: sandboxImageName, cmd: sandboxCmd },
      );
      for (const t of [tarball, pause]) {
        const r = await ctr(["-n", criNamespace, "images", "import", t]);
        if (r.code !== 0) throw new Error(`ctr -n ${criNamespace} images import ${t}: ${r.stderr}`);
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { dir, kataRoot, address, ctr, log: () => readFile(logFile, "utf8"), cri, restart, stop };
}
