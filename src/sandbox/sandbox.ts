// A sandbox on the host: its share directory, its VM, its agent connection, and its containers. Every
// step of creation registers its undo, so a failure leaves nothing behind (no QEMU, no mount, no
// directory), and destroy() undoes the lot in reverse. Every call into the guest has a deadline, and a
// guest that stops answering (or a VM that exits, or an agent that exits) marks the sandbox lost: calls
// then fail at once.

import { concurrently, longLivedController } from "../base/async.js";
import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, firstFailure, isKataError, wrap } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import { errField } from "../base/log.js";
import { AgentClient, type AgentApi } from "../agent-client/agent-client.js";
import { boundedAgent, defaultAgentDeadlines, type AgentDeadlines } from "../agent-client/deadlines.js";
import type { InternetworkingModel } from "../config/types.js";
import { refreshClone, type FactorySettings, type VmFactory } from "../factory/vm-factory.js";
import { withCurrentMacs } from "../factory/template-plan.js";
import type { Hypervisor, Vm, VmSpec } from "../hypervisor/hypervisor.js";
import type { Mounter } from "../platform/mount.js";
import type { ShareBinder } from "../platform/share-binder.js";
import { describeExit } from "../platform/process.js";
import type { Spec as GrpcSpec } from "../protocol/gen/oci_pb.js";
import { HealthCheckResponse_ServingStatus } from "../protocol/gen/health_pb.js";
import { applyHostBinds } from "../storage/apply.js";
import { planSandboxStorages, type StoragePlan } from "../storage/plan.js";
import { SharedDir, sharedDirPaths } from "../storage/shared-dir.js";
import { vmDirOf } from "./persist.js";
import { connectAgent } from "./boot-console.js";
import { guestLogForwarder } from "./guest-log.js";
import { noPodNetwork, type PodNetwork } from "./pod-network.js";
import { configureGuestNetwork, vmSpecOf } from "./sandbox-vm.js";
import { VmResizer, type VmResizerInit, type VmSize } from "./vm-resize-apply.js";

export interface SandboxDeps {
  readonly hypervisor: Hypervisor;
  readonly mounter: Mounter;
  /** Binds into the share without following symlinks (the native helper kata-ts-mount). */
  readonly binder: ShareBinder;
  readonly readMountInfo: () => Promise<string>;
  readonly logger: Logger;
  /** Monotonic milliseconds, for phase timings. */
  readonly now: () => number;
  /** Where VMs come from when `[factory]` enables one (docs/factory.md); absent: always a direct boot. */
  readonly factory?: VmFactory;
}

/** The VM of a sandbox: what the hypervisor boots (VmSpec), plus boot and guest settings. */
export interface SandboxVmConfig extends VmSpec {
  readonly bootTimeoutMs: number;
  readonly msize9p: number;
  /** Size of the pod's /dev/shm in the guest (Kata's default: 64 MiB). */
  readonly shmSizeBytes?: number;
  /** Kernel modules the agent loads at CreateSandbox ([agent.kata] kernel_modules). */
  readonly kernelModules?: readonly { readonly name: string; readonly parameters: readonly string[] }[];
  /** Deadlines of calls into the guest once it is up. */
  readonly agentDeadlines?: AgentDeadlines;
  /** How the pod's network reaches the VM ([runtime] internetworking_model, disable_new_netns); absent: none. */
  readonly network?: { readonly model: InternetworkingModel; readonly disableNewNetns: boolean };
  /** `[factory]`: a VM template to start from when it matches (docs/factory.md). */
  readonly factory?: FactorySettings;
  /** The guest console (the agent's logs among it) into the host log (see guest-log.ts): when debugging. */
  readonly guestLogs?: boolean;
  /**
   * default_vcpus and default_memory: what the VM needs besides its containers' limits, when a container
   * joins the running pod (vm-resize.ts). Absent: the VM is never grown.
   */
  readonly baseSize?: VmSize;
  /** [runtime] disable_guest_seccomp for every container of the pod; absent: profiles are applied. */
  readonly disableGuestSeccomp?: boolean;
}

export type { VmSize } from "./vm-resize-apply.js";

export const defaultShmSizeBytes = 64 * 1024 * 1024;

export interface SandboxConfig {
  readonly id: string;
  /** <run>: state and share directories live below it. */
  readonly runDir: string;
  readonly hostname: string;
  readonly vm: SandboxVmConfig;
  readonly netnsPath?: string;
  /** The pod's interfaces as wired to taps: QEMU gets a NIC per tap, the guest their addresses and routes. */
  readonly network?: PodNetwork;
}

/** A container ready to be created in the guest: planned and converted before the VM was touched. */
export interface PreparedContainer {
  readonly containerId: string;
  /** The bundle's rootfs on the host. */
  readonly rootfs: string;
  readonly storage: StoragePlan;
  readonly spec: GrpcSpec;
}

/** Phase name → milliseconds since the sandbox's creation began. */
export type Timings = Record<string, number>;

/** Guest calls made while tearing down: short, since the VM is stopped next anyway. */
const teardownRpcMs = 5000;

export class Sandbox {
  readonly id: string;
  readonly timings: Timings;
  readonly vm: Vm;
  /** Grows the VM as containers join the pod (vm-resize.ts); absent without SandboxVmConfig.baseSize. */
  readonly resizer: VmResizer | undefined;
  /** The guest agent, every call bounded (see agent-client/deadlines.ts). */
  readonly agent: AgentApi;
  readonly share: SharedDir;
  readonly #client: AgentClient;
  /** Per container: the host binds it shared (undone last, after the guest let go of them). */
  readonly #containers = new Map<string, CleanupStack>();
  readonly #cleanup: CleanupStack;
  readonly #log: Logger;
  readonly #life: AbortController;
  readonly #deadlines: AgentDeadlines;
  readonly #bootSize: VmSize;
  #probing = false;
  /** Set once destroy() began: losing the VM is then expected, not news. */
  #destroyed = false;
  #destroying: Promise<void> | undefined;

  private constructor(init: {
    id: string;
    timings: Timings;
    vm: Vm;
    size: VmSize;
    resize: Omit<VmResizerInit, "vm" | "agent" | "log"> | undefined;
    client: AgentClient;
    share: SharedDir;
    cleanup: CleanupStack;
    log: Logger;
    deadlines: AgentDeadlines;
    life: AbortController;
  }) {
    this.id = init.id;
    this.timings = init.timings;
    this.vm = init.vm;
    this.share = init.share;
    this.#client = init.client;
    this.#cleanup = init.cleanup;
    this.#log = init.log;
    this.#life = init.life;
    this.#deadlines = init.deadlines;
    this.agent = boundedAgent(init.client.agent, {
      deadlines: init.deadlines,
      life: this.#life.signal,
      onDeadline: (method) => {
        this.#probe(method);
      },
    });
    this.resizer =
      init.resize === undefined
        ? undefined
        : new VmResizer({ ...init.resize, vm: init.vm, agent: this.agent, log: init.log });
    this.#bootSize = init.size;
    void init.vm.exited.then((status) => {
      this.#markLost(`its VM exited (${describeExit(status)})`);
    });
    void init.client.closed.then(() => {
      this.#markLost("the connection to its guest agent closed");
    });
    // The host's end of a virtio-serial port stays connected when the guest's agent dies: only QEMU
    // sees the guest close its end. The agent init starts next has none of this sandbox's containers,
    // and nothing the old one was asked will be answered.
    init.vm.onAgentChannelClosed(() => {
      this.#markLost("its guest agent exited (the guest closed the agent channel)");
    });
  }

  /** What the VM has now: its boot size, plus what was hot-added. */
  get size(): VmSize {
    return this.resizer?.size ?? this.#bootSize;
  }

  /**
   * Aborted, with a KataError (UNAVAILABLE) as reason, once the sandbox is lost: its VM exited, or its
   * guest stopped answering. Nothing that runs in it can be reached any more.
   */
  get lost(): AbortSignal {
    return this.#life.signal;
  }

  /** Boots the VM and creates the sandbox in the agent. Throws with nothing left behind. */
  static async create(deps: SandboxDeps, cfg: SandboxConfig, signal: AbortSignal): Promise<Sandbox> {
    const t0 = deps.now();
    const timings: Timings = {};
    const mark = (phase: string): void => {
      timings[phase] = deps.now() - t0;
    };
    const log = deps.logger.child({ sandboxId: cfg.id });
    const deadlines = cfg.vm.agentDeadlines ?? defaultAgentDeadlines;
    // Aborted once the sandbox is lost; made here so teardown steps registered below can see it.
    const life = longLivedController();
    const undo = new CleanupStack();
    const network = cfg.network ?? noPodNetwork;
    try {
      const storages = planSandboxStorages({
        shmSizeBytes: cfg.vm.shmSizeBytes ?? defaultShmSizeBytes,
        msize9p: cfg.vm.msize9p,
      });
      const share = new SharedDir(deps, sharedDirPaths(cfg.runDir, cfg.id));
      undo.defer("remove share directory", () => share.teardown());
      await share.setup();
      mark("shareReady");

      const vmConfig = {
        ...vmSpecOf(cfg.vm),
        id: cfg.id,
        vmDir: vmDirOf(cfg.runDir, cfg.id),
        sharedDir: share.paths.shared,
        nics: network.nics,
        ...(cfg.vm.guestLogs === true ? { onConsoleLine: guestLogForwarder(log.child({ component: "guest" })) } : {}),
        ...(cfg.netnsPath === undefined ? {} : { netnsPath: cfg.netnsPath }),
      };
      const fromFactory =
        cfg.vm.factory === undefined || deps.factory === undefined
          ? undefined
          : await deps.factory.getVm(cfg.vm.factory, vmConfig, signal, network.links);
      const vm = fromFactory?.vm ?? (await deps.hypervisor.startVm(vmConfig, signal));
      undo.defer("stop vm", () => vm.stop());
      mark("vmStarted");

      const client = await connectAgent(
        vm,
        {
          id: cfg.id,
          runDir: cfg.runDir,
          bootTimeoutMs: cfg.vm.bootTimeoutMs,
          agentWasRunning: fromFactory !== undefined,
        },
        log,
        signal,
      );
      undo.defer("close agent connection", () => client.close());
      mark("agentReady");

      undo.defer("destroy sandbox in guest", () =>
        client.agent
          .destroySandbox({}, { timeoutMs: Math.min(teardownRpcMs, deadlines.requestMs), signal: life.signal })
          .then(
            () => undefined,
            (e: unknown) => {
              // The VM is stopped next anyway; what the guest held goes with it.
              log.warn("destroy sandbox in guest failed", { err: errField(e) });
            },
          ),
      );
      const setUp = async (callSignal: AbortSignal): Promise<void> => {
        // Kata's order: the network first, so the sandbox's hooks and containers find it up.
        const macChanges = fromFactory?.nicMacChanges ?? [];
        const guestNetwork = { ...network, interfaces: withCurrentMacs(network.interfaces, macChanges) };
        await configureGuestNetwork(client.agent, guestNetwork, { signal: callSignal, timeoutMs: deadlines.requestMs });
        mark("networkReady");
        await client.agent.createSandbox(
          {
            sandboxId: cfg.id,
            hostname: cfg.hostname,
            storages,
            kernelModules: (cfg.vm.kernelModules ?? []).map((m) => ({ name: m.name, parameters: [...m.parameters] })),
          },
          { signal: callSignal, timeoutMs: deadlines.requestMs },
        );
      };
      // A clone's fresh randomness and clock are independent of the network and CreateSandbox, which
      // run no container code: the guest does them meanwhile (docs/factory.md#where-a-clones-time-goes).
      // Both are done before create returns, so before any container can start.
      const refresh = async (callSignal: AbortSignal): Promise<void> => {
        if (fromFactory?.source !== "template") return;
        await refreshClone(client.agent, { signal: callSignal, timeoutMs: deadlines.requestMs });
        mark("cloneRefreshed");
      };
      await concurrently([refresh, setUp], signal);
      mark("sandboxCreated");
      const cleanup = new CleanupStack();
      undo.transferTo(cleanup);
      log.info("sandbox created", { timings });
      const size = { vcpus: cfg.vm.vcpus, memoryMiB: cfg.vm.memoryMiB };
      const base = cfg.vm.baseSize;
      const resize =
        base === undefined ? undefined : { machineType: cfg.vm.machineType, base, size, room: cfg.vm.hotplug };
      return new Sandbox({ id: cfg.id, timings, vm, size, resize, client, share, cleanup, log, deadlines, life });
    } catch (e) {
      return undo.unwind(wrap(e, `create sandbox ${cfg.id}`));
    }
  }

  /**
   * Shares the container's rootfs and planned volumes with the guest and creates it in the agent. On
   * failure nothing of it is left.
   */
  async createContainer(c: PreparedContainer, signal: AbortSignal): Promise<void> {
    const { containerId } = c;
    if (this.#containers.has(containerId)) {
      throw new KataError(Code.AlreadyExists, `container ${containerId} already exists in sandbox ${this.id}`);
    }
    const undo = new CleanupStack();
    const relative = `${containerId}/rootfs`;
    try {
      // The rootfs is shared read-write even when root.readonly is set (as Kata does): crun creates the
      // mount points of the container's volumes in it before it remounts it read-only, and the sandbox
      // container's rootfs holds the pod's disk-backed emptyDirs. It is the container's own layer.
      // The rootfs and the volumes go in one helper run (a spawn each cost ~5 ms, more under load).
      await applyHostBinds(
        this.share,
        [{ source: c.rootfs, relative, readonly: false, kind: "dir" }, ...c.storage.binds],
        undo,
      );
      for (const d of c.storage.dirs) {
        // Stays with the sandbox's rootfs (the pod's disk emptyDir); the guest removes it with its last user.
        await this.share.makeDir(d, signal);
      }
      await this.agent.createContainer(
        { containerId, execId: containerId, OCI: c.spec, storages: c.storage.storages },
        { signal },
      );
      const stack = new CleanupStack();
      undo.transferTo(stack);
      this.#containers.set(containerId, stack);
    } catch (e) {
      await undo.unwind(wrap(e, `create container ${containerId}`));
    }
  }

  /**
   * Removes the container from the guest (which kills what still runs in it and lets go of its files),
   * then unshares what it shared. Idempotent.
   */
  async removeContainer(containerId: string): Promise<void> {
    const stack = this.#containers.get(containerId);
    if (stack === undefined) return;
    this.#containers.delete(containerId);
    await this.#removeInGuest(containerId);
    await stack.close(`remove container ${containerId}`);
  }

  async #removeInGuest(containerId: string): Promise<void> {
    if (this.lost.aborted) return;
    const timeoutMs = Math.min(teardownRpcMs, this.#deadlines.requestMs);
    await this.agent.removeContainer({ containerId, timeout: 5 }, { timeoutMs }).catch((e: unknown) => {
      // The host side is removed regardless: what the guest still holds dies with the VM.
      this.#log.warn("remove container in guest failed", { containerId, err: errField(e) });
    });
  }

  /** Stops everything this sandbox created. Idempotent; throws only if something could not be undone. */
  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  async #destroy(): Promise<void> {
    const failures: unknown[] = [];
    // The guest first; then the VM stops, which closes whatever files of the containers its 9p server
    // still held (a guest that stopped answering never let go of them); then the share's teardown
    // unmounts every container's binds with the rest.
    for (const id of [...this.#containers.keys()].reverse()) await this.#removeInGuest(id);
    this.#containers.clear();
    this.#destroyed = true;
    await this.#cleanup.close(`destroy sandbox ${this.id}`).catch((e: unknown) => failures.push(e));
    this.#markLost("it was destroyed");
    const failed = firstFailure(`destroy sandbox ${this.id}`, failures);
    if (failed !== undefined) throw failed;
    this.#log.info("sandbox destroyed");
  }

  /** A call missed its deadline: if the guest does not answer a health check either, it is lost. */
  #probe(method: string): void {
    if (this.#probing || this.lost.aborted) return;
    this.#probing = true;
    const probeMs = this.#deadlines.healthCheckMs;
    this.#client.health.check({}, { timeoutMs: probeMs, signal: this.lost }).then(
      (r) => {
        this.#probing = false;
        if (r.status !== HealthCheckResponse_ServingStatus.SERVING) {
          this.#markLost(`its guest agent reports it is not serving (after ${method} timed out)`);
        }
      },
      (e: unknown) => {
        this.#probing = false;
        if (isKataError(e, Code.DeadlineExceeded)) {
          this.#markLost(`its guest stopped answering (${method} timed out, then a health check for ${probeMs} ms)`);
        }
      },
    );
  }

  #markLost(why: string): void {
    if (this.#life.signal.aborted) return;
    const reason = new KataError(Code.Unavailable, `sandbox ${this.id} is lost: ${why}`);
    if (!this.#destroyed) this.#log.warn("sandbox lost", { err: errField(reason) });
    this.#life.abort(reason);
  }
}
