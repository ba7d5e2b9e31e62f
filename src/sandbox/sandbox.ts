// A sandbox on the host: its share directory, its VM, its agent connection, and its containers. Every
// step of creation registers its undo, so a failure leaves nothing behind (no QEMU, no mount, no
// directory), and destroy() undoes the lot in reverse.

import path from "node:path";
import { abortError, deadline } from "../base/async.js";
import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, describeError, isKataError, wrap } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import { AgentClient, type AgentApi } from "../agent-client/agent-client.js";
import type { Hypervisor, Vm, VmSpec } from "../hypervisor/hypervisor.js";
import type { Bundle } from "../oci/bundle.js";
import type { Mounter } from "../platform/mount.js";
import { ociToGrpcSpec } from "../protocol/oci-spec/convert.js";
import type { MountEntry } from "../platform/mountinfo.js";
import { applyHostBinds, inspectSources } from "../storage/apply.js";
import { planContainerStorage, planSandboxStorages, sourcesToInspect } from "../storage/plan.js";
import { SharedDir, sharedDirPaths } from "../storage/shared-dir.js";
import { guestSpec } from "./guest-spec.js";

export interface SandboxDeps {
  readonly hypervisor: Hypervisor;
  readonly mounter: Mounter;
  readonly readMountInfo: () => Promise<string>;
  readonly logger: Logger;
  /** Monotonic milliseconds, for phase timings. */
  readonly now: () => number;
}

/** The VM of a sandbox: its VmSpec (the binary named hypervisorPath here), plus boot and guest settings. */
export interface SandboxVmConfig extends Omit<VmSpec, "binaryPath"> {
  readonly bootTimeoutMs: number;
  readonly msize9p: number;
  /** The hypervisor binary (configuration `path`, possibly overridden by an allowed annotation). */
  readonly hypervisorPath?: string;
  /** Size of the pod's /dev/shm in the guest (Kata's default: 64 MiB). */
  readonly shmSizeBytes?: number;
}

export const defaultShmSizeBytes = 64 * 1024 * 1024;

export interface SandboxConfig {
  readonly id: string;
  /** <run>: state and share directories live below it. */
  readonly runDir: string;
  readonly hostname: string;
  readonly vm: SandboxVmConfig;
  readonly netnsPath?: string;
}

/** Phase name → milliseconds since the sandbox's creation began. */
export type Timings = Record<string, number>;

const destroyRpcTimeoutMs = 5000;

export class Sandbox {
  readonly id: string;
  readonly timings: Timings;
  readonly vm: Vm;
  readonly agent: AgentApi;
  readonly share: SharedDir;
  readonly #containers = new Map<string, CleanupStack>();
  readonly #cleanup: CleanupStack;
  readonly #log: Logger;
  #destroying: Promise<void> | undefined;

  private constructor(init: {
    id: string;
    timings: Timings;
    vm: Vm;
    client: AgentClient;
    share: SharedDir;
    cleanup: CleanupStack;
    log: Logger;
  }) {
    this.id = init.id;
    this.timings = init.timings;
    this.vm = init.vm;
    this.agent = init.client.agent;
    this.share = init.share;
    this.#cleanup = init.cleanup;
    this.#log = init.log;
  }

  /** Boots the VM and creates the sandbox in the agent. Throws with nothing left behind. */
  static async create(deps: SandboxDeps, cfg: SandboxConfig, signal: AbortSignal): Promise<Sandbox> {
    const t0 = deps.now();
    const timings: Timings = {};
    const mark = (phase: string): void => {
      timings[phase] = deps.now() - t0;
    };
    const log = deps.logger.child({ sandboxId: cfg.id });
    const undo = new CleanupStack();
    try {
      const storages = planSandboxStorages({
        shmSizeBytes: cfg.vm.shmSizeBytes ?? defaultShmSizeBytes,
        msize9p: cfg.vm.msize9p,
      });
      const share = new SharedDir(deps, sharedDirPaths(cfg.runDir, cfg.id));
      undo.defer("remove share directory", () => share.teardown());
      await share.setup();
      mark("shareReady");

      const vm = await deps.hypervisor.startVm(
        {
          id: cfg.id,
          vmDir: path.join(cfg.runDir, "vm", cfg.id),
          machineType: cfg.vm.machineType,
          vcpus: cfg.vm.vcpus,
          memoryMiB: cfg.vm.memoryMiB,
          kernelPath: cfg.vm.kernelPath,
          initrdPath: cfg.vm.initrdPath,
          ...(cfg.vm.readonlyDisks === undefined ? {} : { readonlyDisks: cfg.vm.readonlyDisks }),
          kernelParams: cfg.vm.kernelParams,
          ...(cfg.vm.hypervisorPath === undefined ? {} : { binaryPath: cfg.vm.hypervisorPath }),
          sharedDir: share.paths.shared,
          ...(cfg.netnsPath === undefined ? {} : { netnsPath: cfg.netnsPath }),
        },
        signal,
      );
      undo.defer("stop vm", () => vm.stop());
      mark("vmStarted");

      const vmGone = new AbortController();
      void vm.exited.then(() => {
        vmGone.abort(new KataError(Code.Unavailable, "the VM exited during boot"));
      });
      const bootDeadline = deadline(cfg.vm.bootTimeoutMs, signal, vmGone.signal);
      const boot = bootDeadline.signal;
      let client: AgentClient;
      try {
        client = await AgentClient.connect(vm.agentSocketPath, { signal: boot, logger: log });
        undo.defer("close agent connection", () => client.close());
        await client.waitReady(boot);
      } catch (e) {
        if (signal.aborted) throw abortError(signal, "boot");
        const reason = vmGone.signal.aborted
          ? "the VM exited before its agent answered"
          : isKataError(e, Code.DeadlineExceeded) || boot.aborted
            ? `the guest agent did not answer within ${cfg.vm.bootTimeoutMs} ms`
            : `the guest agent failed: ${describeError(e)}`;
        throw new KataError(
          Code.DeadlineExceeded,
          `boot sandbox ${cfg.id}: ${reason}; guest console:\n${await vm.consoleTail(20)}`,
        );
      } finally {
        bootDeadline.clear();
      }
      mark("agentReady");

      undo.defer("destroy sandbox in guest", () =>
        client.agent.destroySandbox({}, { timeoutMs: destroyRpcTimeoutMs }).then(
          () => undefined,
          (e: unknown) => {
            // The VM is stopped next anyway; what the guest held goes with it.
            log.debug("destroy sandbox in guest", { err: describeError(e) });
          },
        ),
      );
      await client.agent.createSandbox(
        {
          sandboxId: cfg.id,
          hostname: cfg.hostname,
          storages,
        },
        { signal },
      );
      mark("sandboxCreated");
      const cleanup = new CleanupStack();
      undo.transferTo(cleanup);
      log.info("sandbox created", { timings });
      return new Sandbox({ id: cfg.id, timings, vm, client, share, cleanup, log });
    } catch (e) {
      return undo.unwind(wrap(e, `create sandbox ${cfg.id}`));
    }
  }

  /**
   * Shares the bundle's rootfs and volumes with the guest (storage planning decides what crosses and
   * how) and creates the container in the agent. On failure nothing of it is left.
   */
  async createContainer(
    c: { containerId: string; bundle: Bundle; isSandboxContainer: boolean; procMounts: readonly MountEntry[] },
    signal: AbortSignal,
  ): Promise<void> {
    const { containerId, bundle } = c;
    if (this.#containers.has(containerId)) {
      throw new KataError(Code.AlreadyExists, `container ${containerId} already exists in sandbox ${this.id}`);
    }
    const undo = new CleanupStack();
    const relative = `${containerId}/rootfs`;
    try {
      const mounts = bundle.spec.mounts ?? [];
      const plan = planContainerStorage({
        sandboxId: this.id,
        containerId,
        isSandboxContainer: c.isSandboxContainer,
        mounts,
        procMounts: c.procMounts,
        sources: await inspectSources(sourcesToInspect(mounts)),
      });
      // The rootfs is shared read-write even when root.readonly is set (as Kata does): crun creates the
      // mount points of the container's volumes in it before it remounts it read-only, and the sandbox
      // container's rootfs holds the pod's disk-backed emptyDirs. It is the container's own layer.
      await this.share.bindDir(bundle.rootfs, relative, false);
      undo.defer(`unshare rootfs of ${containerId}`, () => this.share.unbind(relative));
      await applyHostBinds(this.share, plan.binds, undo);
      const spec = guestSpec({ containerId, spec: bundle.spec, mounts: plan.mounts });
      await this.agent.createContainer(
        { containerId, execId: containerId, OCI: ociToGrpcSpec(spec), storages: plan.storages },
        { signal },
      );
      undo.defer(`remove container ${containerId} in the guest`, () => this.#removeInGuest(containerId));
      const stack = new CleanupStack();
      undo.transferTo(stack);
      this.#containers.set(containerId, stack);
    } catch (e) {
      await undo.unwind(wrap(e, `create container ${containerId}`));
    }
  }

  /** Removes the container from the guest and unshares what it shared. Idempotent. */
  async removeContainer(containerId: string): Promise<void> {
    const stack = this.#containers.get(containerId);
    if (stack === undefined) return;
    this.#containers.delete(containerId);
    await stack.close(`remove container ${containerId}`);
  }

  async #removeInGuest(containerId: string): Promise<void> {
    await this.agent
      .removeContainer({ containerId, timeout: 5 }, { timeoutMs: destroyRpcTimeoutMs })
      .catch((e: unknown) => {
        // The VM may be on its way down; whatever the guest held goes with it.
        this.#log.debug("remove container in guest", { containerId, err: describeError(e) });
      });
  }

  /** Stops everything this sandbox created. Idempotent; throws only if something could not be undone. */
  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  async #destroy(): Promise<void> {
    const failures: string[] = [];
    for (const id of [...this.#containers.keys()].reverse()) {
      await this.removeContainer(id).catch((e: unknown) => failures.push(describeError(e)));
    }
    await this.#cleanup.close(`destroy sandbox ${this.id}`).catch((e: unknown) => failures.push(describeError(e)));
    if (failures.length > 0) throw new KataError(Code.Internal, failures.join("; "));
    this.#log.info("sandbox destroyed");
  }
}
