// The component harness: a temp --root, a FakeHypervisor (real guest Agent over a real unix socket), a
// FakeMounter and a FakeNetns, wired as the host side's deps, so a test builds a real Sandbox, Pod or
// task service on them and checks with leaks() that nothing was left behind. For unit and component
// tests only: nothing here is QEMU, a real mount or a real namespace.
//
//   const h = await Harness.create();
//   const sandbox = await Sandbox.create(h.sandboxDeps(), h.sandboxConfig("sb1"), signal);
//   ...
//   await sandbox.destroy();
//   assert.deepEqual(await h.leaks(), []);
//   await h.dispose();

import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { once } from "node:events";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Code, KataError, ignoreErrno } from "../../src/base/errors.js";
import { defaultSpec } from "../../src/oci/default-spec.js";
import type { Mount, Spec } from "../../src/oci/spec.js";
import type { ProcessRunner } from "../../src/platform/process.js";
import { TtrpcConnection } from "../../src/protocol/ttrpc/client.js";
import type { TtrpcServer } from "../../src/protocol/ttrpc/server.js";
import { StateStore } from "../../src/sandbox/persist.js";
import type { StdioPaths } from "../../src/sandbox/pod-process.js";
import type { PodDeps, PodOptions } from "../../src/sandbox/pod.js";
import type { SandboxConfig, SandboxDeps, SandboxVmConfig } from "../../src/sandbox/sandbox.js";
import { procTable, type StaleDeps } from "../../src/sandbox/stale.js";
import { FakeMounter, FakeNetns, FakePodNetwork, FakeShareBinder } from "./fake-host.js";
import { FakeHypervisor } from "./fake-vm.js";
import { LineLogger, nextFakePid } from "./fakes.js";

/** Directories under --root that hold one entry per live sandbox or container. */
const stateDirs = ["sbs", "containers-mapping", "vm", "shared/sandboxes"];

/**
 * What the fakes and `root` still hold: VMs never stopped, mounts, network namespaces, and entries in
 * the per-sandbox directories under `root`. Empty when everything was cleaned up.
 */
export async function leaks(
  fakes: { hypervisor?: FakeHypervisor; mounter?: FakeMounter; netns?: FakeNetns; network?: FakePodNetwork },
  root: string,
): Promise<string[]> {
  const out: string[] = [];
  for (const vm of fakes.hypervisor?.notStopped() ?? []) out.push(`VM ${vm.id} (fake pid ${vm.pid}) not stopped`);
  for (const m of fakes.mounter?.mounted() ?? []) out.push(`mount at ${m}`);
  for (const n of fakes.netns?.names() ?? []) out.push(`network namespace ${n}`);
  for (const t of fakes.network?.taps() ?? []) out.push(`tap ${t}`);
  for (const d of stateDirs) {
    for (const e of (await readdir(path.join(root, d)).catch(ignoreErrno("ENOENT"))) ?? []) {
      out.push(`<root>/${d}/${e}`);
    }
  }
  return out;
}

/** Starts no host process: hooks (the only users of PodDeps.runner) need a test's own runner. */
const refusingRunner: ProcessRunner = {
  run: (file) =>
    Promise.reject(new KataError(Code.Unimplemented, `the component harness runs no host process (${file})`)),
  spawn: (file) =>
    Promise.reject(new KataError(Code.Unimplemented, `the component harness runs no host process (${file})`)),
};

/** A process's stdio as regular files in the harness's directory. */
export interface StdioFiles {
  readonly paths: StdioPaths;
  stdout(): Promise<string>;
  stderr(): Promise<string>;
}

export interface BundleOptions {
  readonly args: string[];
  readonly annotations?: Record<string, string>;
  /** Added after the default spec's mounts (bind volumes, say). */
  readonly mounts?: Mount[];
  /** Changes to the spec after those. */
  readonly edit?: (spec: Spec) => void;
}

export class Harness {
  /** The temp directory that holds everything below (removed by dispose). */
  readonly dir: string;
  /** The runtime's --root: state, mappings, VM and share directories live below it. */
  readonly root: string;
  readonly hypervisor = new FakeHypervisor();
  readonly mounter = new FakeMounter();
  readonly binder = new FakeShareBinder(this.mounter);
  readonly netns = new FakeNetns();
  readonly network = new FakePodNetwork();
  readonly store: StateStore;
  /** The host side's log lines (debug included). */
  readonly logger = new LineLogger([], { debug: true });
  /** Boot deadline of the sandboxes made with sandboxConfig/podDeps. */
  bootTimeoutMs = 5000;
  readonly #listeners: net.Server[] = [];
  readonly #servicePids = new Map<string, number>();
  readonly #connections: TtrpcConnection[] = [];

  private constructor(dir: string) {
    this.dir = dir;
    this.root = path.join(dir, "root");
    this.store = new StateStore(this.root);
  }

  static async create(): Promise<Harness> {
    const dir = await mkdtemp(path.join(tmpdir(), "kata-ts-harness-"));
    const h = new Harness(dir);
    await mkdir(h.root, { recursive: true });
    return h;
  }

  sandboxDeps(): SandboxDeps {
    return {
      hypervisor: this.hypervisor,
      mounter: this.mounter,
      binder: this.binder,
      readMountInfo: this.mounter.readMountInfo,
      logger: this.logger,
      now: () => performance.now(),
    };
  }

  vmConfig(): SandboxVmConfig {
    return {
      machineType: "microvm",
      vcpus: 1,
      memoryMiB: 256,
      kernelPath: "/fake/vmlinuz",
      initrdPath: "/fake/initrd",
      kernelParams: [],
      bootTimeoutMs: this.bootTimeoutMs,
      msize9p: 8192,
      network: { model: "tcfilter", disableNewNetns: false },
    };
  }

  sandboxConfig(id: string): SandboxConfig {
    return { id, runDir: this.root, hostname: id, vm: this.vmConfig() };
  }

  podDeps(): PodDeps {
    return {
      ...this.sandboxDeps(),
      runner: refusingRunner,
      netns: this.netns,
      network: this.network,
      store: this.store,
      readProcMounts: this.mounter.readProcMounts,
      resolveVm: () => Promise.resolve(this.vmConfig()),
    };
  }

  podOptions(sandboxId: string): PodOptions {
    return {
      sandboxId,
      runDir: this.root,
      pid: this.servicePid(sandboxId),
      socketPath: this.store.socketPath(sandboxId),
    };
  }

  /** The pid a sandbox's service says it has: a fake one, which stale cleanup can never find (and kill). */
  servicePid(sandboxId: string): number {
    const pid = this.#servicePids.get(sandboxId) ?? nextFakePid();
    this.#servicePids.set(sandboxId, pid);
    return pid;
  }

  staleDeps(): StaleDeps {
    return {
      store: this.store,
      mounter: this.mounter,
      readMountInfo: this.mounter.readMountInfo,
      netns: this.netns,
      network: this.network,
      logger: this.logger,
      // Fake pids are never real processes: the real table finds none of them, and kills nothing.
      processes: procTable,
    };
  }

  /** Writes an OCI bundle (config.json and an empty rootfs) for container `id`; returns its directory. */
  async bundle(id: string, opts: BundleOptions): Promise<string> {
    const dir = path.join(this.dir, "bundles", id);
    await mkdir(path.join(dir, "rootfs"), { recursive: true });
    const spec = defaultSpec({ args: opts.args, terminal: false });
    spec.mounts = [...(spec.mounts ?? []), ...(opts.mounts ?? [])];
    if (opts.annotations !== undefined) spec.annotations = opts.annotations;
    opts.edit?.(spec);
    await writeFile(path.join(dir, "config.json"), JSON.stringify(spec));
    return dir;
  }

  /** A real host directory to bind into a container. */
  async volume(name: string): Promise<string> {
    const dir = path.join(this.dir, "volumes", name);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /** Stdout and stderr files for a process named `name`, and a stdin file holding `opts.stdin` if given. */
  async stdio(name: string, opts: { stdin?: string } = {}): Promise<StdioFiles> {
    const dir = path.join(this.dir, "io", name);
    await mkdir(dir, { recursive: true });
    const stdin = opts.stdin === undefined ? "" : path.join(dir, "stdin");
    if (opts.stdin !== undefined) await writeFile(stdin, opts.stdin);
    const paths = { stdin, stdout: path.join(dir, "stdout"), stderr: path.join(dir, "stderr"), terminal: false };
    const read = (p: string) => async () => (await readFile(p, "utf8").catch(ignoreErrno("ENOENT"))) ?? "";
    return { paths, stdout: read(paths.stdout), stderr: read(paths.stderr) };
  }

  /**
   * Serves `server` on a unix socket in the harness's directory (as the shim serves containerd) and
   * returns a client connection to it. Both go at dispose().
   */
  async connect(server: TtrpcServer): Promise<TtrpcConnection> {
    const socketPath = path.join(this.dir, `ttrpc-${this.#listeners.length}.sock`);
    const listener = net.createServer((s) => {
      void server.serve(s);
    });
    this.#listeners.push(listener);
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(socketPath, resolve);
    });
    const socket = net.connect(socketPath);
    await once(socket, "connect");
    const conn = new TtrpcConnection(socket);
    this.#connections.push(conn);
    return conn;
  }

  leaks(): Promise<string[]> {
    return leaks(this, this.root);
  }

  /** Stops the VMs a test left running and removes the temp directory; run it in afterEach. */
  async dispose(): Promise<void> {
    for (const c of this.#connections) await c.close();
    for (const l of this.#listeners) {
      await new Promise<void>((resolve) => {
        l.close(() => {
          resolve();
        });
      });
    }
    for (const vm of this.hypervisor.notStopped()) await vm.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Annotations that make a bundle a pod's sandbox or one of its containers (containerd CRI's keys). */
export function criAnnotations(type: "sandbox" | "container", sandboxId: string): Record<string, string> {
  return { "io.kubernetes.cri.container-type": type, "io.kubernetes.cri.sandbox-id": sandboxId };
}
