// The per-sandbox service's state machine: one sandbox (VM) and the containers of its pod. Both front
// doors drive it: the containerd task API (shim) and the OCI CLI (through the same task API). This is
// the create path of Kata's katautils (the seed) plus the lifecycle verbs after it.

import { readFile } from "node:fs/promises";
import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, describeError, wrap } from "../base/errors.js";
import { checkId } from "../base/ids.js";
import { KeyedLock } from "../base/lock.js";
import type { Logger } from "../base/log.js";
import { containerRole } from "../oci/annotations.js";
import { loadBundle, type Bundle } from "../oci/bundle.js";
import { ociVersion, type LinuxResources, type Process, type Spec, type State } from "../oci/spec.js";
import { parseProcMounts } from "../platform/mountinfo.js";
import type { ProcessRunner } from "../platform/process.js";
import { ociToGrpcProcess, ociToGrpcSpec } from "../protocol/oci-spec/convert.js";
import type { NetnsManager } from "../network/netns.js";
import { planNetns } from "../network/netns.js";
import { inSpan } from "../platform/tracing.js";
import { runHooks, runHooksWarnOnly } from "./hooks.js";
import type { StateStore, PersistedSandbox, ContainerStatus } from "./persist.js";
import { PodProcess, type ExitInfo, type StdioPaths } from "./pod-process.js";
import { Sandbox, type SandboxDeps, type SandboxVmConfig } from "./sandbox.js";

export interface PodDeps extends SandboxDeps {
  readonly runner: ProcessRunner;
  readonly netns: NetnsManager;
  readonly store: StateStore;
  readonly readProcMounts: () => Promise<string>;
  /** The VM for this pod, from the configuration and the sandbox container's annotations. */
  readonly resolveVm: (spec: Spec) => Promise<SandboxVmConfig>;
}

export interface PodOptions {
  readonly sandboxId: string;
  readonly runDir: string;
  /** This service's pid: the "pid" of every container as the host sees it. */
  readonly pid: number;
  readonly socketPath: string;
}

interface PodContainer {
  readonly id: string;
  readonly bundle: Bundle;
  readonly type: "sandbox" | "container";
  readonly createdAt: Date;
  readonly init: PodProcess;
  readonly execs: Map<string, PodProcess>;
  paused: boolean;
}

export interface ProcessState {
  readonly id: string;
  readonly execId: string;
  readonly bundle: string;
  readonly pid: number;
  readonly status: ContainerStatus;
  readonly stdio: StdioPaths;
  readonly exit: ExitInfo | undefined;
}

export class Pod {
  readonly id: string;
  readonly #deps: PodDeps;
  readonly #opts: PodOptions;
  readonly #log: Logger;
  readonly #lock = new KeyedLock();
  readonly #containers = new Map<string, PodContainer>();
  #sandbox: Sandbox | undefined;
  /** Phase name → deps.now() when the sandbox reached it (absolute, for callers in this process). */
  readonly timings: Record<string, number> = {};
  #netnsPath: string | undefined;
  #persisted: PersistedSandbox;
  readonly #done: Promise<void>;
  #finish!: () => void;

  constructor(deps: PodDeps, opts: PodOptions) {
    this.id = checkId("sandbox id", opts.sandboxId);
    this.#deps = deps;
    this.#opts = opts;
    this.#log = deps.logger.child({ sandboxId: this.id });
    this.#persisted = {
      version: 1,
      id: this.id,
      servicePid: opts.pid,
      socket: opts.socketPath,
      createdAt: new Date().toISOString(),
      containers: [],
    };
    this.#done = new Promise((r) => {
      this.#finish = r;
    });
  }

  /** Resolves once the sandbox is gone (its container deleted, or the service shut down). */
  get done(): Promise<void> {
    return this.#done;
  }

  get sandbox(): Sandbox | undefined {
    return this.#sandbox;
  }

  async create(req: { id: string; bundle: string; stdio: StdioPaths }, signal: AbortSignal): Promise<number> {
    const id = checkId("container id", req.id);
    return this.#lock.with("pod", async () => {
      const bundle = await loadBundle(req.bundle);
      const role = containerRole(bundle.spec, id);
      if (role.sandboxId !== this.id) {
        throw new KataError(
          Code.InvalidArgument,
          `container ${id} belongs to sandbox ${role.sandboxId}, not ${this.id}`,
        );
      }
      if (this.#containers.has(id)) throw new KataError(Code.AlreadyExists, `container ${id} already exists`);
      if (role.type === "sandbox" && this.#sandbox !== undefined) {
        throw new KataError(
          Code.AlreadyExists,
          `sandbox ${this.id} already exists: cannot create another sandbox in it`,
        );
      }
      if (role.type === "container" && this.#sandbox === undefined) {
        throw new KataError(
          Code.FailedPrecondition,
          `sandbox ${this.id} is not created yet: create its sandbox container first`,
        );
      }
      await this.#deps.store.addMapping(id, this.id);
      const undo = new CleanupStack();
      undo.defer(`remove mapping of ${id}`, () => this.#deps.store.removeMapping(id));
      try {
        if (role.type === "sandbox") {
          await inSpan("createSandbox", { sandboxId: this.id }, () => this.#createSandbox(bundle, undo, signal));
        }
        const procMounts = parseProcMounts(await this.#deps.readProcMounts());
        // CAST: set by #createSandbox or checked above.
        const sandbox = this.#sandbox as Sandbox;
        await inSpan("createContainer", { sandboxId: this.id, containerId: id }, () =>
          sandbox.createContainer(
            { containerId: id, bundle, isSandboxContainer: role.type === "sandbox", procMounts },
            signal,
          ),
        );
        undo.defer(`remove container ${id}`, () => sandbox.removeContainer(id));
        if (role.type === "container") {
          // Kata runs a pod container's prestart hooks after it is created, in the pod's netns.
          await runHooks(
            this.#deps,
            "prestart",
            bundle.spec.hooks?.prestart ?? [],
            this.#ociState(id, bundle, "created"),
            {
              ...(this.#netnsPath === undefined ? {} : { netnsPath: this.#netnsPath }),
              signal,
            },
          );
        }
        // On a terminal, stdout and stderr are one stream (the pty's).
        const stdio = bundle.spec.process?.terminal === true ? { ...req.stdio, stderr: "", terminal: true } : req.stdio;
        const init = new PodProcess(id, id, stdio, this.#log);
        await init.open();
        undo.defer(`close stdio of ${id}`, () => {
          init.releaseStdio();
        });
        const c: PodContainer = {
          id,
          bundle,
          type: role.type,
          createdAt: new Date(),
          init,
          execs: new Map(),
          paused: false,
        };
        this.#containers.set(id, c);
        await this.#persist();
        undo.release();
        this.#log.info("container created", { containerId: id, type: role.type });
        return this.#opts.pid;
      } catch (e) {
        this.#containers.delete(id);
        return undo.unwind(wrap(e, `create container ${id}`));
      }
    });
  }

  async #createSandbox(bundle: Bundle, undo: CleanupStack, signal: AbortSignal): Promise<void> {
    await inSpan("netns", {}, () => this.#setupNetns(bundle, undo, signal));
    // Both kinds run in the runtime's namespace before the VM exists; each failure names its own kind.
    for (const kind of ["prestart", "createRuntime"] as const) {
      const hooks = bundle.spec.hooks?.[kind] ?? [];
      await inSpan(`${kind}Hooks`, { count: hooks.length }, () =>
        runHooks(this.#deps, kind, hooks, this.#ociState(this.id, bundle, "creating"), {
          netnsPath: this.#netnsPath,
          signal,
        }),
      );
    }
    const vm = await this.#deps.resolveVm(bundle.spec);
    const startedAt = this.#deps.now();
    const sandbox = await inSpan("startVm", { machineType: vm.machineType, memoryMiB: vm.memoryMiB }, () =>
      Sandbox.create(
        this.#deps,
        {
          id: this.id,
          runDir: this.#opts.runDir,
          hostname: bundle.spec.hostname ?? this.id,
          vm,
          ...(this.#netnsPath === undefined ? {} : { netnsPath: this.#netnsPath }),
        },
        signal,
      ),
    );
    undo.defer(`destroy sandbox ${this.id}`, () => sandbox.destroy());
    this.#sandbox = sandbox;
    this.#persisted.vmPid = sandbox.vm.pid;
    for (const [phase, ms] of Object.entries(sandbox.timings)) this.timings[phase] = startedAt + ms;
  }

  async #setupNetns(bundle: Bundle, undo: CleanupStack, signal: AbortSignal): Promise<void> {
    const netnsPlan = planNetns(bundle.spec, this.id);
    if (netnsPlan.kind === "create") {
      this.#netnsPath = await this.#deps.netns.create(netnsPlan.name, signal);
      const name = netnsPlan.name;
      undo.defer(`remove netns ${name}`, () => this.#deps.netns.remove(name));
      this.#persisted.netns = { path: this.#netnsPath, created: true };
    } else {
      await this.#deps.netns.checkJoinable(netnsPlan.path);
      this.#netnsPath = netnsPlan.path;
      this.#persisted.netns = { path: netnsPlan.path, created: false };
    }
  }

  async start(id: string, execId: string): Promise<number> {
    return this.#lock.with(id, async () => {
      const c = this.#container(id);
      const sandbox = this.#requireSandbox();
      if (execId !== "" && execId !== id) {
        const p = this.#process(c, execId);
        if (p.status !== "created")
          throw new KataError(Code.FailedPrecondition, `process ${execId} is ${p.status}, not created`);
        const spec = this.#execSpecs.get(`${id}/${execId}`);
        if (spec === undefined) throw new KataError(Code.Internal, `exec ${execId}: no process spec recorded`);
        await sandbox.agent.execProcess({ containerId: id, execId, process: ociToGrpcProcess(spec) }, {});
        this.#execSpecs.delete(`${id}/${execId}`);
        p.attach(sandbox.agent, () => Promise.resolve());
        return this.#opts.pid;
      }
      if (c.init.status !== "created")
        throw new KataError(Code.FailedPrecondition, `container ${id} is ${c.init.status}, not created`);
      await sandbox.agent.startContainer({ containerId: id }, {});
      c.init.attach(
        sandbox.agent,
        () => this.#persist(),
        () => {
          this.timings[`firstOutput:${id}`] ??= this.#deps.now();
        },
      );
      await this.#persist();
      await runHooksWarnOnly(
        this.#deps,
        "poststart",
        c.bundle.spec.hooks?.poststart ?? [],
        this.#ociState(id, c.bundle, "running"),
        {
          ...(this.#netnsPath === undefined ? {} : { netnsPath: this.#netnsPath }),
          logger: this.#log,
        },
      );
      return this.#opts.pid;
    });
  }

  readonly #execSpecs = new Map<string, Process>();

  async exec(id: string, execId: string, process: Process, stdio: StdioPaths): Promise<void> {
    checkId("exec id", execId);
    await this.#lock.with(id, async () => {
      const c = this.#container(id);
      if (c.init.status !== "running") throw new KataError(Code.FailedPrecondition, `container ${id} is not running`);
      if (execId === id || c.execs.has(execId))
        throw new KataError(Code.AlreadyExists, `exec id ${execId} already exists in ${id}`);
      const p = new PodProcess(
        id,
        execId,
        process.terminal === true ? { ...stdio, stderr: "", terminal: true } : stdio,
        this.#log,
      );
      await p.open();
      c.execs.set(execId, p);
      this.#execSpecs.set(`${id}/${execId}`, process);
    });
  }

  state(id: string, execId: string): ProcessState {
    const c = this.#container(id);
    const p = execId === "" || execId === id ? c.init : this.#process(c, execId);
    const status: ContainerStatus = p === c.init && c.paused && p.status === "running" ? "paused" : p.status;
    return { id, execId, bundle: c.bundle.dir, pid: this.#opts.pid, status, stdio: p.stdio, exit: p.exit };
  }

  ociState(id: string): State {
    const c = this.#container(id);
    const s = this.state(id, "");
    return this.#ociState(id, c.bundle, s.status);
  }

  async kill(id: string, execId: string, signal: number, all: boolean): Promise<void> {
    const c = this.#container(id);
    const p = execId === "" || execId === id ? c.init : this.#process(c, execId);
    if (p.status === "stopped") {
      // CRI kills stopped containers to be sure: SIGKILL and SIGTERM are no-ops then.
      if (signal === 9 || signal === 15) return;
      throw new KataError(Code.FailedPrecondition, `container ${id} is stopped: cannot send signal ${signal}`);
    }
    const sandbox = this.#requireSandbox();
    if (p.status === "created") {
      if (p === c.init) {
        await sandbox.agent.signalProcess({ containerId: id, execId: "", signal }, {});
        if (signal === 9 || signal === 15) {
          p.markStopped(128 + signal);
          await this.#persist();
        }
      } else if (signal === 9 || signal === 15) {
        p.markStopped(128 + signal);
      }
      return;
    }
    await sandbox.agent.signalProcess({ containerId: id, execId: p === c.init ? (all ? "" : id) : execId, signal }, {});
  }

  wait(id: string, execId: string): Promise<ExitInfo> {
    const c = this.#container(id);
    const p = execId === "" || execId === id ? c.init : this.#process(c, execId);
    return p.exited;
  }

  closeIO(id: string, execId: string): void {
    const c = this.#container(id);
    const p = execId === "" || execId === id ? c.init : this.#process(c, execId);
    p.closeStdin();
  }

  async delete(id: string, execId: string): Promise<{ exit: ExitInfo | undefined }> {
    if (execId !== "" && execId !== id) {
      const c = this.#container(id);
      const p = this.#process(c, execId);
      if (p.status === "running") throw new KataError(Code.FailedPrecondition, `process ${execId} is running`);
      c.execs.delete(execId);
      return { exit: p.exit };
    }
    return this.#lock.with("pod", async () => {
      const c = this.#container(id);
      if (c.init.status === "running") {
        throw new KataError(
          Code.FailedPrecondition,
          `container ${id} is running: kill it first, or delete with --force`,
        );
      }
      if (c.type === "sandbox") {
        const others = [...this.#containers.keys()].filter((k) => k !== id);
        if (others.length > 0) {
          throw new KataError(Code.FailedPrecondition, `sandbox ${id} still has containers: ${others.join(", ")}`);
        }
      }
      if (c.init.status === "created") {
        c.init.markStopped(137);
        c.init.releaseStdio();
      }
      await this.#removeContainer(c);
      if (c.type === "sandbox") await this.#destroy();
      else await this.#persist();
      return { exit: c.init.exit };
    });
  }

  async #removeContainer(c: PodContainer): Promise<void> {
    const failures: string[] = [];
    await this.#sandbox?.removeContainer(c.id).catch((e: unknown) => failures.push(describeError(e)));
    this.#containers.delete(c.id);
    await this.#deps.store.removeMapping(c.id).catch((e: unknown) => failures.push(describeError(e)));
    await runHooksWarnOnly(
      this.#deps,
      "poststop",
      c.bundle.spec.hooks?.poststop ?? [],
      this.#ociState(c.id, c.bundle, "stopped"),
      {
        ...(this.#netnsPath === undefined ? {} : { netnsPath: this.#netnsPath }),
        logger: this.#log,
      },
    );
    if (failures.length > 0) throw new KataError(Code.Internal, `delete container ${c.id}: ${failures.join("; ")}`);
  }

  /** Tears the whole pod down: containers, VM, share, netns, state. Idempotent. */
  async #destroy(): Promise<void> {
    const failures: string[] = [];
    for (const c of [...this.#containers.values()].reverse()) {
      if (c.init.status === "created") c.init.releaseStdio();
      if (c.init.status !== "stopped") c.init.markStopped(137);
      await this.#removeContainer(c).catch((e: unknown) => failures.push(describeError(e)));
    }
    await this.#sandbox?.destroy().catch((e: unknown) => failures.push(describeError(e)));
    this.#sandbox = undefined;
    if (this.#persisted.netns?.created === true) {
      const name = this.#persisted.netns.path.split("/").pop() ?? "";
      await this.#deps.netns.remove(name).catch((e: unknown) => failures.push(describeError(e)));
    }
    await this.#deps.store.removeSandbox(this.id).catch((e: unknown) => failures.push(describeError(e)));
    this.#finish();
    if (failures.length > 0) throw new KataError(Code.Internal, `destroy sandbox ${this.id}: ${failures.join("; ")}`);
  }

  /** Forced teardown (service shutdown, signal): kills whatever runs. */
  async shutdown(): Promise<void> {
    await this.#lock.with("pod", () => this.#destroy());
  }

  /** Resizes a process's terminal (ResizePty); a process not running yet keeps the size it was given. */
  async resizePty(id: string, execId: string, width: number, height: number): Promise<void> {
    const c = this.#container(id);
    const p = execId === "" || execId === id ? c.init : this.#process(c, execId);
    if (!p.stdio.terminal) throw new KataError(Code.FailedPrecondition, `process ${p.execId} of ${id} has no terminal`);
    if (p.status !== "running") return;
    await this.#requireSandbox().agent.ttyWinResize(
      { containerId: id, execId: p === c.init ? "" : execId, row: height, column: width },
      {},
    );
  }

  async pause(id: string): Promise<void> {
    const c = this.#container(id);
    await this.#requireSandbox().agent.pauseContainer({ containerId: id }, {});
    c.paused = true;
    await this.#persist();
  }

  async resume(id: string): Promise<void> {
    const c = this.#container(id);
    await this.#requireSandbox().agent.resumeContainer({ containerId: id }, {});
    c.paused = false;
    await this.#persist();
  }

  async update(id: string, resources: LinuxResources): Promise<void> {
    this.#container(id);
    const spec = ociToGrpcSpec({ ociVersion, linux: { resources } });
    await this.#requireSandbox().agent.updateContainer({ containerId: id, resources: spec.Linux?.Resources }, {});
  }

  async stats(id: string): Promise<Awaited<ReturnType<Sandbox["agent"]["statsContainer"]>>> {
    this.#container(id);
    return this.#requireSandbox().agent.statsContainer({ containerId: id }, {});
  }

  /** Guest pids (json) or a ps table of the container's processes. */
  async ps(id: string, format: "json" | "table"): Promise<string> {
    this.#container(id);
    const r = await this.#requireSandbox().agent.listProcesses({ containerId: id, format, args: [] }, {});
    return Buffer.from(r.processList).toString("utf8");
  }

  containerIds(): string[] {
    return [...this.#containers.keys()];
  }

  #ociState(id: string, bundle: Bundle, status: State["status"]): State {
    return {
      ociVersion,
      id,
      status,
      pid: this.#opts.pid,
      bundle: bundle.dir,
      ...(bundle.spec.annotations === undefined ? {} : { annotations: bundle.spec.annotations }),
    };
  }

  #container(id: string): PodContainer {
    const c = this.#containers.get(id);
    if (c === undefined) throw new KataError(Code.NotFound, `container ${id} not found in sandbox ${this.id}`);
    return c;
  }

  #process(c: PodContainer, execId: string): PodProcess {
    const p = c.execs.get(execId);
    if (p === undefined) throw new KataError(Code.NotFound, `process ${execId} not found in container ${c.id}`);
    return p;
  }

  #requireSandbox(): Sandbox {
    if (this.#sandbox === undefined) throw new KataError(Code.FailedPrecondition, `sandbox ${this.id} is not running`);
    return this.#sandbox;
  }

  async #persist(): Promise<void> {
    this.#persisted.containers = [...this.#containers.values()].map((c) => ({
      id: c.id,
      bundle: c.bundle.dir,
      type: c.type,
      status: c.paused && c.init.status === "running" ? "paused" : c.init.status,
      createdAt: c.createdAt.toISOString(),
      annotations: c.bundle.spec.annotations ?? {},
      ...(c.init.exit === undefined
        ? {}
        : { exitStatus: c.init.exit.exitStatus, exitedAt: c.init.exit.exitedAt.toISOString() }),
    }));
    await this.#deps.store.save(this.#persisted);
  }
}

/** For tests and `kata-ts state` of a dead service: the /proc/mounts reader. */
export const readHostProcMounts = (): Promise<string> => readFile("/proc/mounts", "utf8");
