// The per-sandbox service's pod: one sandbox (VM) and the containers of its pod, driven by both front
// doors (the containerd task API, and the OCI CLI through it). This file holds the verbs and their
// locking; the create path is in pod-create.ts and create-path.ts, what the pod holds and its teardown
// in pod-core.ts, guest-side verbs in pod-guest-ops.ts, statuses in status.ts.
//
// Locking: a verb that changes a container takes that container's lock; create and delete of a
// container also take the pod's lock first (always pod, then container), so they never interleave with
// each other or with another verb on the same container. Reads (state, wait, ps, stats) take none.

import { readFile } from "node:fs/promises";
import { linkSignals } from "../base/async.js";
import { Code, KataError } from "../base/errors.js";
import { checkId } from "../base/ids.js";
import { KeyedLock } from "../base/lock.js";
import { errField } from "../base/log.js";
import type { LinuxResources, Process, State } from "../oci/spec.js";
import type { StatsContainerResponse } from "../protocol/gen/agent_pb.js";
import { ociToGrpcProcess } from "../protocol/oci-spec/convert.js";
import { runHooksWarnOnly } from "./hooks.js";
import { PodCore, type PodDeps, type PodOptions } from "./pod-core.js";
import { createInPod, type CreateRequest } from "./pod-create.js";
import * as ops from "./pod-guest-ops.js";
import { PodProcess, type ExitInfo, type StdioPaths } from "./pod-process.js";
import type { Sandbox } from "./sandbox.js";
import type { ContainerStatus } from "./status.js";

export type { PodDeps, PodOptions } from "./pod-core.js";
export type { PsRow } from "./pod-guest-ops.js";

export interface ProcessState {
  readonly id: string;
  readonly execId: string;
  readonly bundle: string;
  readonly pid: number;
  readonly status: ContainerStatus;
  readonly stdio: StdioPaths;
  readonly exit: ExitInfo | undefined;
}

const podLockKey = "/pod";

export class Pod {
  readonly id: string;
  readonly #core: PodCore;
  readonly #locks = new KeyedLock();
  /** Phase name → deps.now() when the sandbox reached it (absolute, for callers in this process). */
  readonly timings: Record<string, number> = {};

  constructor(deps: PodDeps, opts: PodOptions) {
    this.id = checkId("sandbox id", opts.sandboxId);
    this.#core = new PodCore(this.id, deps, opts);
  }

  /** Resolves once the pod is over: its sandbox deleted, shut down, or never created. */
  get done(): Promise<void> {
    return this.#core.done;
  }

  get sandbox(): Sandbox | undefined {
    return this.#core.sandbox;
  }

  /** Calls `listener` with the container's id each time the guest's OOM killer kills one of its processes. */
  onOom(listener: (containerId: string) => void): void {
    this.#core.oomListeners.add(listener);
  }

  /** Creates a container; for the sandbox container, the whole sandbox. Nothing remains on failure. */
  async create(req: CreateRequest, signal: AbortSignal): Promise<number> {
    const id = checkId("container id", req.id);
    const core = this.#core;
    return this.#withPod(signal, (s) =>
      this.#withContainer(id, async () => {
        const type = await createInPod(core, { ...req, id }, this.timings, s).catch(async (e: unknown) => {
          // A service whose sandbox could not be made has nothing to serve.
          if (core.sandbox === undefined) {
            await core.destroy().catch((d: unknown) => {
              core.log.error("cleanup after a failed create", { err: errField(d) });
            });
          }
          throw e;
        });
        core.log.info("container created", { containerId: id, type });
        return core.opts.pid;
      }),
    );
  }

  /** Starts a created container's init, or a created exec. */
  async start(id: string, execId: string, signal: AbortSignal): Promise<number> {
    const core = this.#core;
    await this.#withContainer(id, async () => {
      const c = core.container(id);
      const sandbox = core.requireSandbox();
      if (execId !== "" && execId !== id) {
        const e = c.exec(execId);
        e.process.cell.expect("start");
        c.init.cell.require("exec");
        await core.agentCall(signal, (s) =>
          sandbox.agent.execProcess({ containerId: id, execId, process: e.spec }, { signal: s }),
        );
        e.process.attach(sandbox.agent, { onExit: () => Promise.resolve(), lost: sandbox.lost });
        await ops.applyPendingSize(core, id, execId, signal);
        return;
      }
      c.init.cell.expect("start");
      await core.agentCall(signal, (s) => sandbox.agent.startContainer({ containerId: id }, { signal: s }));
      c.init.attach(sandbox.agent, {
        onExit: () => core.persist(),
        onFirstOutput: () => {
          this.timings[`firstOutput:${id}`] ??= core.deps.now();
        },
        lost: sandbox.lost,
      });
      await ops.applyPendingSize(core, id, "", signal);
      await core.persist();
      const hooks = c.bundle.spec.hooks?.poststart ?? [];
      await runHooksWarnOnly(core.deps, "poststart", hooks, core.hookState(id, c.bundle, "running"), {
        netnsPath: core.netns?.path,
        logger: core.log,
      });
    });
    return core.opts.pid;
  }

  /** Adds an exec process to a running container (started by start(id, execId)). */
  async exec(id: string, execId: string, process: Process, stdio: StdioPaths): Promise<void> {
    checkId("exec id", execId);
    await this.#withContainer(id, async () => {
      const c = this.#core.container(id);
      c.init.cell.require("exec");
      if (execId === id || c.execs.has(execId)) {
        throw new KataError(Code.AlreadyExists, `exec id ${execId} already exists in ${id}`);
      }
      const spec = ociToGrpcProcess(process);
      const terminal = process.terminal === true;
      const paths = terminal ? { ...stdio, stderr: "", terminal } : stdio;
      const p = new PodProcess(id, execId, paths, this.#core.log, { kind: "process" });
      await p.open();
      c.execs.set(execId, { process: p, spec });
    });
  }

  state(id: string, execId: string): ProcessState {
    const c = this.#core.container(id);
    const p = c.process(execId);
    const { stdio, exit } = p;
    return { id, execId, bundle: c.bundle.dir, pid: this.#core.opts.pid, status: p.status, stdio, exit };
  }

  ociState(id: string): State {
    const c = this.#core.container(id);
    return this.#core.hookState(id, c.bundle, c.init.status);
  }

  async kill(id: string, execId: string, signo: number, all: boolean, signal: AbortSignal): Promise<void> {
    await this.#withContainer(id, () => ops.signalProcess(this.#core, { id, execId, signo, all }, signal));
  }

  wait(id: string, execId: string): Promise<ExitInfo> {
    return this.#core.container(id).process(execId).exited;
  }

  closeIO(id: string, execId: string): void {
    this.#core.container(id).process(execId).closeStdin();
  }

  /**
   * Deletes a created or stopped process; the sandbox container's delete tears the whole pod down.
   * With `force` (the OCI CLI's delete --force) a running process is killed by its removal in the guest,
   * and the sandbox's delete takes its other containers with it: each guest call is bounded, and the
   * host side is removed whatever the guest does.
   */
  async delete(
    id: string,
    execId: string,
    signal: AbortSignal,
    opts: { force?: boolean } = {},
  ): Promise<{ exit: ExitInfo | undefined }> {
    const force = opts.force === true;
    const core = this.#core;
    if (execId !== "" && execId !== id) {
      return this.#withContainer(id, async () => {
        const c = core.container(id);
        const e = c.exec(execId);
        if (!force) e.process.cell.require("delete");
        if (e.process.status === "running" && core.sandbox?.lost.aborted === false) {
          const agent = core.sandbox.agent;
          await core
            .agentCall(signal, (s) => agent.signalProcess({ containerId: id, execId, signal: 9 }, { signal: s }))
            .catch((err: unknown) => {
              core.log.warn("kill before a forced delete failed", { containerId: id, execId, err: errField(err) });
            });
        }
        e.process.markStopped(137);
        c.execs.delete(execId);
        return { exit: e.process.exit };
      });
    }
    return this.#withPod(signal, () =>
      this.#withContainer(id, async () => {
        const c = core.container(id);
        if (!force) c.init.cell.require("delete");
        c.init.markStopped(137);
        if (c.type === "sandbox") {
          const others = [...core.containers.keys()].filter((k) => k !== id);
          if (others.length > 0 && !force) {
            throw new KataError(Code.FailedPrecondition, `sandbox ${id} still has containers: ${others.join(", ")}`);
          }
          await core.destroy();
        } else {
          // Removing it in the guest kills whatever still runs there.
          await core.removeContainer(c);
          await core.persist();
        }
        return { exit: c.init.exit };
      }),
    );
  }

  /** Forced teardown (Shutdown, a signal): stops what runs and removes everything. Idempotent. */
  async shutdown(): Promise<void> {
    this.#core.life.abort(new KataError(Code.Cancelled, `sandbox ${this.id} is shutting down`));
    await this.#locks.with(podLockKey, () => this.#core.destroy());
  }

  async resizePty(id: string, execId: string, width: number, height: number, signal: AbortSignal): Promise<void> {
    await ops.resizeTerminal(this.#core, { id, execId, width, height }, signal);
  }

  async pause(id: string, signal: AbortSignal): Promise<void> {
    await this.#withContainer(id, () => ops.changeRunState(this.#core, id, "pause", signal));
  }

  async resume(id: string, signal: AbortSignal): Promise<void> {
    await this.#withContainer(id, () => ops.changeRunState(this.#core, id, "resume", signal));
  }

  async update(id: string, resources: LinuxResources, signal: AbortSignal): Promise<void> {
    await this.#withContainer(id, () => ops.updateResources(this.#core, id, resources, signal));
  }

  stats(id: string, signal: AbortSignal): Promise<StatsContainerResponse> {
    return ops.containerStats(this.#core, id, signal);
  }

  ps(
    id: string,
    args: readonly string[],
    signal: AbortSignal,
  ): Promise<{ header: readonly string[]; rows: ops.PsRow[] }> {
    return ops.listProcesses(this.#core, id, args, signal);
  }

  containerIds(): string[] {
    return [...this.#core.containers.keys()];
  }

  /** Runs `fn` under the pod's lock with a signal that also ends on shutdown. */
  async #withPod<T>(signal: AbortSignal, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const linked = linkSignals(signal, this.#core.life.signal);
    try {
      return await this.#locks.with(podLockKey, () => {
        this.#refuseAfterShutdown();
        return fn(linked.signal);
      });
    } finally {
      linked.clear();
    }
  }

  #withContainer<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.with(id, () => {
      this.#refuseAfterShutdown();
      return fn();
    });
  }

  #refuseAfterShutdown(): void {
    if (this.#core.life.signal.aborted || this.#core.destroying) {
      throw new KataError(Code.FailedPrecondition, `sandbox ${this.id} is shut down`);
    }
  }
}

/** For tests and `kata-ts state` of a dead service: the /proc/mounts reader. */
export const readHostProcMounts = (): Promise<string> => readFile("/proc/mounts", "utf8");
