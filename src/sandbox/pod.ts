// The per-sandbox service's pod: one sandbox (VM) and the containers of its pod, driven by both front
// doors (the containerd task API, and the OCI CLI through it). This file holds the verbs and their
// locking; the create path is in create-path.ts, statuses in status.ts, processes in pod-process.ts.
//
// Locking: a verb on a container takes that container's lock; create and delete of a container also
// take the pod's lock first (always pod, then container), so they never interleave with each other or
// with another verb on the same container. Reads (state, wait, ps, stats, resize) take none.

import { readFile } from "node:fs/promises";
import { linkSignals } from "../base/async.js";
import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, describeError, wrap } from "../base/errors.js";
import { checkId } from "../base/ids.js";
import { KeyedLock } from "../base/lock.js";
import { errField, type Logger } from "../base/log.js";
import { containerRole } from "../oci/annotations.js";
import { loadBundle } from "../oci/bundle.js";
import { ociVersion, type LinuxResources, type Process, type State } from "../oci/spec.js";
import { inSpan } from "../platform/tracing.js";
import type { StatsContainerResponse } from "../protocol/gen/agent_pb.js";
import { ociToGrpcProcess, ociToGrpcSpec } from "../protocol/oci-spec.js";
import { bootSandbox, hookState, prepareContainer, type CreatePathDeps, type PodNetns } from "./create-path.js";
import { runHooks, runHooksWarnOnly } from "./hooks.js";
import type { PersistedSandbox } from "./persist.js";
import { PodContainer } from "./pod-container.js";
import { PodProcess, lostExitStatus, type ExitInfo, type StdioPaths } from "./pod-process.js";
import type { Sandbox } from "./sandbox.js";
import type { ContainerStatus } from "./status.js";

export type PodDeps = CreatePathDeps;

export interface PodOptions {
  readonly sandboxId: string;
  readonly runDir: string;
  /** This service's pid: the "pid" of every container as the host sees it. */
  readonly pid: number;
  readonly socketPath: string;
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

/** One row of `ps`: the guest pid first, then the rest of the guest's ps line. */
export interface PsRow {
  readonly pid: number;
  readonly fields: readonly string[];
}

const podLockKey = "/pod";

export class Pod {
  readonly id: string;
  readonly #deps: PodDeps;
  readonly #opts: PodOptions;
  readonly #log: Logger;
  readonly #locks = new KeyedLock();
  readonly #containers = new Map<string, PodContainer>();
  /** Aborted by shutdown(): verbs in flight end, later ones are refused. */
  readonly #life = new AbortController();
  #sandbox: Sandbox | undefined;
  #netns: PodNetns | undefined;
  /** Phase name → deps.now() when the sandbox reached it (absolute, for callers in this process). */
  readonly timings: Record<string, number> = {};
  readonly #createdAt = new Date().toISOString();
  readonly #done: Promise<void>;
  #finish!: () => void;
  #destroying: Promise<void> | undefined;

  constructor(deps: PodDeps, opts: PodOptions) {
    this.id = checkId("sandbox id", opts.sandboxId);
    this.#deps = deps;
    this.#opts = opts;
    this.#log = deps.logger.child({ sandboxId: this.id });
    this.#done = new Promise((r) => {
      this.#finish = r;
    });
  }

  /** Resolves once the pod is over: its sandbox deleted, shut down, or never created. */
  get done(): Promise<void> {
    return this.#done;
  }

  get sandbox(): Sandbox | undefined {
    return this.#sandbox;
  }

  /** Creates a container; for the sandbox container, the whole sandbox. Nothing remains on failure. */
  async create(req: { id: string; bundle: string; stdio: StdioPaths }, signal: AbortSignal): Promise<number> {
    const id = checkId("container id", req.id);
    return this.#withPod(signal, (s) =>
      this.#withContainer(id, async () => {
        const type = await this.#createLocked(id, req, s).catch(async (e: unknown) => {
          // A service whose sandbox could not be made has nothing to serve.
          if (this.#sandbox === undefined)
            await this.#destroy().catch((d: unknown) => {
              this.#logTeardown(d);
            });
          throw e;
        });
        this.#log.info("container created", { containerId: id, type });
        return this.#opts.pid;
      }),
    );
  }

  async #createLocked(
    id: string,
    req: { bundle: string; stdio: StdioPaths },
    signal: AbortSignal,
  ): Promise<"sandbox" | "container"> {
    const bundle = await loadBundle(req.bundle);
    const role = containerRole(bundle.spec, id);
    if (role.sandboxId !== this.id) {
      throw new KataError(Code.InvalidArgument, `container ${id} belongs to sandbox ${role.sandboxId}, not ${this.id}`);
    }
    if (this.#containers.has(id)) throw new KataError(Code.AlreadyExists, `container ${id} already exists`);
    const isSandbox = role.type === "sandbox";
    if (isSandbox && this.#sandbox !== undefined) {
      throw new KataError(Code.AlreadyExists, `sandbox ${this.id} already exists: cannot create another sandbox in it`);
    }
    if (!isSandbox && this.#sandbox === undefined) {
      throw new KataError(
        Code.FailedPrecondition,
        `sandbox ${this.id} is not created yet: create its sandbox container first`,
      );
    }
    const undo = new CleanupStack();
    try {
      // Everything that can be checked is checked before anything is made, the VM above all.
      const vm = isSandbox ? await this.#deps.resolveVm(bundle.spec) : undefined;
      const prepared = await prepareContainer(this.#deps, { sandboxId: this.id, containerId: id, bundle, isSandbox });
      // On a terminal, stdout and stderr are one stream (the pty's).
      const terminal = bundle.spec.process?.terminal === true;
      const init = new PodProcess(id, id, terminal ? { ...req.stdio, stderr: "", terminal } : req.stdio, this.#log, {
        initial: "creating",
      });
      await init.open();
      undo.defer(`close stdio of ${id}`, () => {
        init.releaseStdio();
      });
      await this.#deps.store.addMapping(id, this.id);
      undo.defer(`remove mapping of ${id}`, () => this.#deps.store.removeMapping(id));

      let sandbox = this.#sandbox;
      if (vm !== undefined) {
        const startedAt = this.#deps.now();
        const made = await inSpan("createSandbox", { sandboxId: this.id }, () =>
          bootSandbox(
            this.#deps,
            { id: this.id, runDir: this.#opts.runDir, bundle, vm, pid: this.#opts.pid },
            undo,
            signal,
          ),
        );
        sandbox = made.sandbox;
        this.#netns = made.netns;
        for (const [phase, ms] of Object.entries(sandbox.timings)) this.timings[phase] = startedAt + ms;
      }
      // CAST: set just above for a sandbox; checked at the top for a pod container.
      const sb = sandbox as Sandbox;
      await inSpan("createContainer", { sandboxId: this.id, containerId: id }, () =>
        sb.createContainer(prepared, signal),
      );
      undo.defer(`remove container ${id}`, () => sb.removeContainer(id));
      if (!isSandbox) {
        // Kata runs a pod container's prestart hooks after it is created, in the pod's netns.
        await runHooks(
          this.#deps,
          "prestart",
          bundle.spec.hooks?.prestart ?? [],
          this.#hookState(id, bundle, "created"),
          {
            netnsPath: this.#netns?.path,
            signal,
          },
        );
      }
      init.cell.apply("created");
      const c = new PodContainer({ id, bundle, type: role.type, process: init });
      this.#containers.set(id, c);
      undo.defer(`forget container ${id}`, () => {
        this.#containers.delete(id);
      });
      if (isSandbox) {
        this.#sandbox = sb;
        undo.defer("forget the sandbox", () => {
          this.#sandbox = undefined;
        });
        this.#watch(sb);
      }
      await this.#persist();
      undo.release();
      return role.type;
    } catch (e) {
      if (isSandbox) this.#netns = undefined;
      return undo.unwind(wrap(e, `create container ${id}`));
    }
  }

  /** Starts a created container's init, or a created exec. */
  async start(id: string, execId: string, signal: AbortSignal): Promise<number> {
    await this.#withContainer(id, async () => {
      const c = this.#container(id);
      const sandbox = this.#requireSandbox();
      const call = linkSignals(signal, this.#life.signal);
      try {
        if (execId !== "" && execId !== id) {
          const e = c.exec(execId);
          e.process.cell.expect("start");
          c.init.cell.require("exec");
          await sandbox.agent.execProcess({ containerId: id, execId, process: e.spec }, { signal: call.signal });
          e.process.attach(sandbox.agent, { onExit: () => Promise.resolve(), lost: sandbox.lost });
          return;
        }
        c.init.cell.expect("start");
        await sandbox.agent.startContainer({ containerId: id }, { signal: call.signal });
      } finally {
        call.clear();
      }
      c.init.attach(sandbox.agent, {
        onExit: () => this.#persist(),
        onFirstOutput: () => {
          this.timings[`firstOutput:${id}`] ??= this.#deps.now();
        },
        lost: sandbox.lost,
      });
      await this.#persist();
      await runHooksWarnOnly(
        this.#deps,
        "poststart",
        c.bundle.spec.hooks?.poststart ?? [],
        this.#hookState(id, c.bundle, "running"),
        { netnsPath: this.#netns?.path, logger: this.#log },
      );
    });
    return this.#opts.pid;
  }

  /** Adds an exec process to a running container (started by start(id, execId)). */
  async exec(id: string, execId: string, process: Process, stdio: StdioPaths): Promise<void> {
    checkId("exec id", execId);
    await this.#withContainer(id, async () => {
      const c = this.#container(id);
      c.init.cell.require("exec");
      if (execId === id || c.execs.has(execId)) {
        throw new KataError(Code.AlreadyExists, `exec id ${execId} already exists in ${id}`);
      }
      const spec = ociToGrpcProcess(process);
      const terminal = process.terminal === true;
      const p = new PodProcess(id, execId, terminal ? { ...stdio, stderr: "", terminal } : stdio, this.#log, {
        kind: "process",
      });
      await p.open();
      c.execs.set(execId, { process: p, spec });
    });
  }

  state(id: string, execId: string): ProcessState {
    const p = this.#container(id).process(execId);
    return {
      id,
      execId,
      bundle: this.#container(id).bundle.dir,
      pid: this.#opts.pid,
      status: p.status,
      stdio: p.stdio,
      exit: p.exit,
    };
  }

  ociState(id: string): State {
    const c = this.#container(id);
    return this.#hookState(id, c.bundle, c.init.status === "creating" ? "creating" : c.init.status);
  }

  /** Signals a process; SIGKILL/SIGTERM of a stopped one is a no-op (CRI kills to be sure). */
  async kill(id: string, execId: string, signo: number, all: boolean, signal: AbortSignal): Promise<void> {
    await this.#withContainer(id, async () => {
      const c = this.#container(id);
      const p = c.process(execId);
      const isInit = p === c.init;
      const stopping = signo === 9 || signo === 15;
      if (p.status === "stopped") {
        if (stopping) return;
        throw new KataError(
          Code.FailedPrecondition,
          `${p.cell.kind} ${p.execId} is stopped: cannot send signal ${signo}`,
        );
      }
      if (p.status === "created") {
        // Nothing runs yet: KILL or TERM stops it for good (OCI kill of a created container).
        if (isInit)
          await this.#agentCall(signal, (s) =>
            this.#requireSandbox().agent.signalProcess({ containerId: id, execId: "", signal: signo }, { signal: s }),
          );
        if (stopping) {
          p.markStopped(128 + signo);
          if (isInit) await this.#persist();
        }
        return;
      }
      // The VM is gone, and every process in it: there is nothing left to stop.
      if (stopping && this.#requireSandbox().lost.aborted) return;
      const guestExecId = isInit ? (all ? "" : id) : execId;
      await this.#agentCall(signal, (s) =>
        this.#requireSandbox().agent.signalProcess(
          { containerId: id, execId: guestExecId, signal: signo },
          { signal: s },
        ),
      );
    });
  }

  wait(id: string, execId: string): Promise<ExitInfo> {
    return this.#container(id).process(execId).exited;
  }

  closeIO(id: string, execId: string): void {
    this.#container(id).process(execId).closeStdin();
  }

  /**
   * Deletes a created or stopped process; the sandbox container's delete tears the whole pod down.
   * With `force` (the OCI CLI's delete --force), a running process is killed with its container's removal
   * in the guest, and the sandbox's delete takes its other containers with it: each guest call is bounded
   * and the host side is removed whatever the guest does.
   */
  async delete(
    id: string,
    execId: string,
    signal: AbortSignal,
    opts: { force?: boolean } = {},
  ): Promise<{ exit: ExitInfo | undefined }> {
    const force = opts.force === true;
    if (execId !== "" && execId !== id) {
      return this.#withContainer(id, async () => {
        const c = this.#container(id);
        const e = c.exec(execId);
        if (!force) e.process.cell.require("delete");
        if (e.process.status === "running" && this.#sandbox?.lost.aborted === false) {
          await this.#agentCall(signal, (s) =>
            this.#requireSandbox().agent.signalProcess({ containerId: id, execId, signal: 9 }, { signal: s }),
          ).catch((err: unknown) => {
            this.#log.warn("kill before a forced delete failed", { containerId: id, execId, err: errField(err) });
          });
        }
        e.process.markStopped(137);
        c.execs.delete(execId);
        return { exit: e.process.exit };
      });
    }
    return this.#withPod(signal, () =>
      this.#withContainer(id, async () => {
        const c = this.#container(id);
        if (!force) c.init.cell.require("delete");
        if (c.type === "sandbox") {
          const others = [...this.#containers.keys()].filter((k) => k !== id);
          if (others.length > 0 && !force) {
            throw new KataError(Code.FailedPrecondition, `sandbox ${id} still has containers: ${others.join(", ")}`);
          }
          c.init.markStopped(137);
          await this.#destroy();
        } else {
          // Removing it in the guest kills whatever still runs there.
          c.init.markStopped(137);
          await this.#removeContainer(c);
          await this.#persist();
        }
        return { exit: c.init.exit };
      }),
    );
  }

  /** Forced teardown (Shutdown, a signal): stops what runs and removes everything. Idempotent. */
  async shutdown(): Promise<void> {
    this.#life.abort(new KataError(Code.Cancelled, `sandbox ${this.id} is shutting down`));
    await this.#locks.with(podLockKey, () => this.#destroy());
  }

  /** Resizes a process's terminal (ResizePty); a process not running yet keeps the size it was given. */
  async resizePty(id: string, execId: string, width: number, height: number, signal: AbortSignal): Promise<void> {
    const c = this.#container(id);
    const p = c.process(execId);
    if (!p.stdio.terminal) throw new KataError(Code.FailedPrecondition, `process ${p.execId} of ${id} has no terminal`);
    if (p.status !== "running") return;
    await this.#agentCall(signal, (s) =>
      this.#requireSandbox().agent.ttyWinResize(
        { containerId: id, execId: p === c.init ? "" : execId, row: height, column: width },
        { signal: s },
      ),
    );
  }

  async pause(id: string, signal: AbortSignal): Promise<void> {
    await this.#changeRunState(id, "pause", signal);
  }

  async resume(id: string, signal: AbortSignal): Promise<void> {
    await this.#changeRunState(id, "resume", signal);
  }

  async #changeRunState(id: string, event: "pause" | "resume", signal: AbortSignal): Promise<void> {
    await this.#withContainer(id, async () => {
      const c = this.#container(id);
      c.init.cell.expect(event);
      const agent = this.#requireSandbox().agent;
      await this.#agentCall(signal, (s) =>
        event === "pause"
          ? agent.pauseContainer({ containerId: id }, { signal: s })
          : agent.resumeContainer({ containerId: id }, { signal: s }),
      );
      c.init.cell.apply(event);
      await this.#persist();
    });
  }

  async update(id: string, resources: LinuxResources, signal: AbortSignal): Promise<void> {
    await this.#withContainer(id, async () => {
      this.#container(id).init.cell.require("update");
      const spec = ociToGrpcSpec({ ociVersion, linux: { resources } });
      await this.#agentCall(signal, (s) =>
        this.#requireSandbox().agent.updateContainer(
          { containerId: id, resources: spec.Linux?.Resources },
          { signal: s },
        ),
      );
    });
  }

  async stats(id: string, signal: AbortSignal): Promise<StatsContainerResponse> {
    this.#container(id).init.cell.require("stats");
    return this.#agentCall(signal, (s) =>
      this.#requireSandbox().agent.statsContainer({ containerId: id }, { signal: s }),
    );
  }

  /** The container's processes as the guest's ps shows them (header first). */
  async ps(id: string, signal: AbortSignal): Promise<{ header: readonly string[]; rows: PsRow[] }> {
    const c = this.#container(id);
    if (c.init.status !== "running" && c.init.status !== "paused") return { header: [], rows: [] };
    const r = await this.#agentCall(signal, (s) =>
      this.#requireSandbox().agent.listProcesses({ containerId: id, format: "table", args: [] }, { signal: s }),
    );
    return parsePsTable(Buffer.from(r.processList).toString("utf8"));
  }

  containerIds(): string[] {
    return [...this.#containers.keys()];
  }

  /** When the sandbox is lost, every process in it is gone: record their exits now. */
  #watch(sandbox: Sandbox): void {
    sandbox.lost.addEventListener(
      "abort",
      () => {
        if (this.#destroying !== undefined) return;
        for (const c of this.#containers.values()) {
          for (const p of c.processes()) if (p.status === "created") p.markStopped(lostExitStatus);
        }
        void this.#persist().catch((e: unknown) => {
          this.#log.warn("save state after the sandbox was lost", { err: errField(e) });
        });
      },
      { once: true },
    );
  }

  async #removeContainer(c: PodContainer): Promise<void> {
    const failures: unknown[] = [];
    for (const p of c.processes()) if (p.status !== "stopped") p.markStopped(137);
    await this.#sandbox?.removeContainer(c.id).catch((e: unknown) => failures.push(e));
    this.#containers.delete(c.id);
    await this.#deps.store.removeMapping(c.id).catch((e: unknown) => failures.push(e));
    await runHooksWarnOnly(
      this.#deps,
      "poststop",
      c.bundle.spec.hooks?.poststop ?? [],
      this.#hookState(c.id, c.bundle, "stopped"),
      { netnsPath: this.#netns?.path, logger: this.#log },
    );
    if (failures.length > 0) {
      throw new KataError(Code.Internal, `delete container ${c.id}: ${failures.map(describeError).join("; ")}`, {
        cause: failures[0],
      });
    }
  }

  /** Tears the whole pod down: containers, VM, share, netns, state. Idempotent. */
  #destroy(): Promise<void> {
    this.#destroying ??= this.#destroyOnce().finally(() => {
      this.#finish();
    });
    return this.#destroying;
  }

  async #destroyOnce(): Promise<void> {
    const failures: unknown[] = [];
    for (const c of [...this.#containers.values()].reverse()) {
      await this.#removeContainer(c).catch((e: unknown) => failures.push(e));
    }
    await this.#sandbox?.destroy().catch((e: unknown) => failures.push(e));
    this.#sandbox = undefined;
    const name = this.#netns?.name;
    if (this.#netns?.created === true && name !== undefined) {
      await this.#deps.netns.remove(name).catch((e: unknown) => failures.push(e));
    }
    this.#netns = undefined;
    await this.#deps.store.removeSandbox(this.id).catch((e: unknown) => failures.push(e));
    if (failures.length > 0) {
      throw new KataError(Code.Internal, `destroy sandbox ${this.id}: ${failures.map(describeError).join("; ")}`, {
        cause: failures[0],
      });
    }
  }

  #logTeardown(e: unknown): void {
    // The create's own error is what the caller gets; this one is for the log.
    this.#log.error("cleanup after a failed create", { err: errField(e) });
  }

  /** Runs `fn` under the pod's lock with a signal that also ends on shutdown. */
  async #withPod<T>(signal: AbortSignal, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const linked = linkSignals(signal, this.#life.signal);
    try {
      return await this.#locks.with(podLockKey, () => {
        if (this.#life.signal.aborted) throw this.#gone();
        return fn(linked.signal);
      });
    } finally {
      linked.clear();
    }
  }

  #withContainer<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.with(id, () => {
      if (this.#life.signal.aborted) throw this.#gone();
      return fn();
    });
  }

  /** A guest call that also ends when the pod shuts down. */
  async #agentCall<T>(signal: AbortSignal, fn: (s: AbortSignal) => Promise<T>): Promise<T> {
    const linked = linkSignals(signal, this.#life.signal);
    try {
      return await fn(linked.signal);
    } finally {
      linked.clear();
    }
  }

  #gone(): KataError {
    return new KataError(Code.FailedPrecondition, `sandbox ${this.id} is shutting down`);
  }

  #hookState(id: string, bundle: PodContainer["bundle"], status: State["status"]): State {
    return hookState(id, bundle, status, this.#opts.pid);
  }

  #container(id: string): PodContainer {
    const c = this.#containers.get(id);
    if (c === undefined) throw new KataError(Code.NotFound, `container ${id} not found in sandbox ${this.id}`);
    return c;
  }

  #requireSandbox(): Sandbox {
    if (this.#sandbox === undefined) throw new KataError(Code.FailedPrecondition, `sandbox ${this.id} is not running`);
    return this.#sandbox;
  }

  async #persist(): Promise<void> {
    const s: PersistedSandbox = {
      version: 1,
      id: this.id,
      servicePid: this.#opts.pid,
      socket: this.#opts.socketPath,
      createdAt: this.#createdAt,
      ...(this.#netns === undefined ? {} : { netns: { path: this.#netns.path, created: this.#netns.created } }),
      ...(this.#sandbox === undefined ? {} : { vmPid: this.#sandbox.vm.pid }),
      containers: [...this.#containers.values()].map((c) => c.persisted()),
    };
    await this.#deps.store.save(s);
  }
}

/** Parses the guest's ps table (a header line, then one line per process, pid first). */
export function parsePsTable(text: string): { header: readonly string[]; rows: PsRow[] } {
  const [head = "", ...lines] = text.split("\n");
  const rows: PsRow[] = [];
  for (const line of lines) {
    const fields = line.trim().split(/\s+/);
    const pid = Number(fields[0]);
    if (line.trim() === "" || !Number.isSafeInteger(pid) || pid <= 0) continue;
    rows.push({ pid, fields });
  }
  return { header: head.trim() === "" ? [] : head.trim().split(/\s+/), rows };
}

/** For tests and `kata-ts state` of a dead service: the /proc/mounts reader. */
export const readHostProcMounts = (): Promise<string> => readFile("/proc/mounts", "utf8");
