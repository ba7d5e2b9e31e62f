// What a pod holds and how it is taken apart: its containers, its sandbox and netns, persistence of
// their state, and teardown. Pod (pod.ts) adds the verbs and their locking on top.

import { delay, linkSignals, longLivedController } from "../base/async.js";
import { Code, KataError, firstFailure, ignoreCode, isKataError } from "../base/errors.js";
import { errField, type Logger } from "../base/log.js";
import type { Bundle } from "../oci/bundle.js";
import type { LinuxResources, State } from "../oci/spec.js";
import { hookState, type CreatePathDeps, type PodNetns } from "./create-path.js";
import { runHooksWarnOnly } from "./hooks.js";
import type { PersistedContainer, PersistedSandbox } from "./persist.js";
import type { PodCgroup } from "./pod-cgroup.js";
import type { PodContainer } from "./pod-container.js";
import { lostExitStatus } from "./pod-process.js";
import type { Sandbox } from "./sandbox.js";
import { shareOf } from "./vm-resize.js";

export type PodDeps = CreatePathDeps;

export interface PodOptions {
  readonly sandboxId: string;
  readonly runDir: string;
  /** This service's pid: the "pid" of every container as the host sees it. */
  readonly pid: number;
  readonly socketPath: string;
}

export class PodCore {
  readonly id: string;
  readonly deps: PodDeps;
  readonly opts: PodOptions;
  readonly log: Logger;
  readonly containers = new Map<string, PodContainer>();
  /** Containers whose create runs (a VM may boot): saved as "creating", so `state` and `list` show them. */
  readonly creating = new Map<string, PersistedContainer>();
  /** Aborted by shutdown: verbs in flight end, later ones are refused. */
  readonly life = longLivedController();
  /** Told the id of a container whose process the guest's OOM killer killed (the shim's TaskOOM). */
  readonly oomListeners = new Set<(containerId: string) => void>();
  sandbox: Sandbox | undefined;
  netns: PodNetns | undefined;
  /** The sandbox's host cgroup, which this service and QEMU joined (absent without a cgroup port). */
  cgroup: PodCgroup | undefined;
  /** The sandbox's [runtime] disable_guest_seccomp, which its pod containers follow. */
  disableGuestSeccomp = false;
  readonly #createdAt = new Date().toISOString();
  readonly #done: Promise<void>;
  #finish!: () => void;
  #destroying: Promise<void> | undefined;

  constructor(id: string, deps: PodDeps, opts: PodOptions) {
    this.id = id;
    this.deps = deps;
    this.opts = opts;
    this.log = deps.logger.child({ sandboxId: id });
    this.#done = new Promise((r) => {
      this.#finish = r;
    });
  }

  get done(): Promise<void> {
    return this.#done;
  }

  get destroying(): boolean {
    return this.#destroying !== undefined;
  }

  container(id: string): PodContainer {
    const c = this.containers.get(id);
    if (c === undefined) throw new KataError(Code.NotFound, `container ${id} not found in sandbox ${this.id}`);
    return c;
  }

  requireSandbox(): Sandbox {
    if (this.sandbox === undefined) throw new KataError(Code.FailedPrecondition, `sandbox ${this.id} is not running`);
    return this.sandbox;
  }

  hookState(id: string, bundle: Bundle, status: State["status"]): State {
    return hookState(id, bundle, status, this.opts.pid);
  }

  /** A guest call that also ends when the pod shuts down. */
  async agentCall<T>(signal: AbortSignal, fn: (s: AbortSignal) => Promise<T>): Promise<T> {
    const linked = linkSignals(signal, this.life.signal);
    try {
      return await fn(linked.signal);
    } finally {
      linked.clear();
    }
  }

  async persist(): Promise<void> {
    const s: PersistedSandbox = {
      version: 1,
      id: this.id,
      servicePid: this.opts.pid,
      socket: this.opts.socketPath,
      createdAt: this.#createdAt,
      ...(this.netns === undefined
        ? {}
        : {
            netns: {
              path: this.netns.path,
              created: this.netns.created,
              ...(this.netns.links === undefined ? {} : { links: this.netns.links.map((l) => ({ ...l })) }),
            },
          }),
      ...(this.sandbox === undefined ? {} : { vmPid: this.sandbox.vm.pid }),
      ...(this.cgroup === undefined ? {} : { cgroup: this.cgroup.persisted() }),
      containers: [...[...this.containers.values()].map((c) => c.persisted()), ...this.creating.values()],
    };
    await this.deps.store.save(s);
  }

  /**
   * Counts the out-of-memory kills the guest reports (GetOOMEvent, asked again after each answer) until
   * the sandbox is gone. An agent without OOM events ends the loop.
   */
  async watchOom(sandbox: Sandbox): Promise<void> {
    // A function, so the checks after each await read the signal anew.
    const lost = (): boolean => sandbox.lost.aborted;
    while (!lost()) {
      let containerId: string;
      try {
        containerId = (await sandbox.agent.getOOMEvent({}, { signal: sandbox.lost })).containerId;
      } catch (e) {
        if (lost() || isKataError(e, Code.Unimplemented)) return;
        this.log.warn("wait for OOM events", { err: errField(e) });
        await delay(1000, sandbox.lost).catch(ignoreCode(Code.Cancelled, Code.Unavailable));
        continue;
      }
      const c = this.containers.get(containerId);
      if (c === undefined) continue;
      c.oomKills++;
      this.log.warn("the guest's out-of-memory killer killed a process of the container", { containerId });
      for (const listener of this.oomListeners) listener(containerId);
      await this.persist().catch((e: unknown) => {
        this.log.warn("save state after an OOM kill", { err: errField(e) });
      });
    }
  }

  /** When the sandbox is lost, every process in it is gone: record the exits of those not started. */
  watch(sandbox: Sandbox): void {
    void this.watchOom(sandbox);
    sandbox.lost.addEventListener(
      "abort",
      () => {
        // A sandbox whose create is being undone (or that is being destroyed) is not news to save.
        if (this.destroying || this.sandbox !== sandbox) return;
        for (const c of this.containers.values()) {
          for (const p of c.processes()) if (p.status === "created") p.markStopped(lostExitStatus);
        }
        void this.persist().catch((e: unknown) => {
          this.log.warn("save state after the sandbox was lost", { err: errField(e) });
        });
      },
      { once: true },
    );
  }

  /**
   * Grows the VM (q35 hotplug, vm-resize.ts) to what the pod's containers that have not stopped need,
   * with `extra` (a joining container's, or an updated one's resources in place of its own).
   */
  async growVm(extra: { id: string; resources: LinuxResources | undefined }, signal: AbortSignal): Promise<void> {
    const resizer = this.sandbox?.resizer;
    if (resizer === undefined) return;
    const shares = [...this.containers.values()]
      .filter((c) => c.id !== extra.id && c.init.status !== "stopped")
      .map((c) => shareOf(c.resources));
    shares.push(shareOf(extra.resources));
    await this.agentCall(signal, (s) => resizer.grow(shares, s));
  }

  /**
   * Removes a container: its processes stopped, its guest side and host binds (unless the whole sandbox
   * goes next, which removes them in the order that works when the guest does not answer), its mapping;
   * poststop hooks.
   */
  async removeContainer(c: PodContainer, opts: { sandboxGoes?: boolean } = {}): Promise<void> {
    const failures: unknown[] = [];
    for (const p of c.processes()) if (p.status !== "stopped") p.markStopped(137);
    if (opts.sandboxGoes !== true) await this.sandbox?.removeContainer(c.id).catch((e: unknown) => failures.push(e));
    this.containers.delete(c.id);
    await this.deps.store.removeMapping(c.id).catch((e: unknown) => failures.push(e));
    await runHooksWarnOnly(
      this.deps,
      "poststop",
      c.bundle.spec.hooks?.poststop ?? [],
      this.hookState(c.id, c.bundle, "stopped"),
      { netnsPath: this.netns?.path, logger: this.log },
    );
    throwAll(`delete container ${c.id}`, failures);
  }

  /** Tears the whole pod down: containers, VM, share, netns, cgroup, state; then the pod is done. Idempotent. */
  destroy(): Promise<void> {
    this.#destroying ??= this.#destroyOnce().finally(() => {
      this.#finish();
    });
    return this.#destroying;
  }

  async #destroyOnce(): Promise<void> {
    const failures: unknown[] = [];
    for (const c of [...this.containers.values()].reverse()) {
      await this.removeContainer(c, { sandboxGoes: true }).catch((e: unknown) => failures.push(e));
    }
    await this.sandbox?.destroy().catch((e: unknown) => failures.push(e));
    this.sandbox = undefined;
    const links = this.netns?.links ?? [];
    if (this.netns !== undefined && links.length > 0) {
      // A joined namespace is left as found (CNI DEL runs on it next); a created one goes whole below.
      await this.deps.network.teardown(this.netns.path, links).catch((e: unknown) => failures.push(e));
    }
    const name = this.netns?.name;
    if (this.netns?.created === true && name !== undefined) {
      await this.deps.netns.remove(name).catch((e: unknown) => failures.push(e));
    }
    this.netns = undefined;
    // Only once QEMU is gone: the service leaves the cgroup and removes what it made of it.
    await this.cgroup?.leave().catch((e: unknown) => failures.push(e));
    this.cgroup = undefined;
    await this.deps.store.removeSandbox(this.id).catch((e: unknown) => failures.push(e));
    throwAll(`destroy sandbox ${this.id}`, failures);
  }
}

/** Throws one error for `op` when anything failed: the first failure as its cause, the rest beside it. */
function throwAll(op: string, failures: readonly unknown[]): void {
  const e = firstFailure(op, failures);
  if (e !== undefined) throw e;
}
