// The create path (Kata's katautils CreateSandbox/CreateContainer, the seed), in two halves:
//   prepare: everything that can be checked or computed before anything is made (configuration, hooks,
//            mount sources and the storage plan, the guest spec and its numbers), so bad input fails
//            in milliseconds and leaves nothing;
//   boot:    the sandbox's host cgroup (joined first, so all that follows is born in it), its network
//            namespace, its prestart/createRuntime hooks, then the VM.
// Each made step registers its undo on the caller's stack.

import type { CleanupStack } from "../base/cleanup.js";
import type { NetnsPort } from "../network/netns.js";
import { planNetns } from "../network/netns.js";
import type { Bundle } from "../oci/bundle.js";
import { ociVersion, type Spec, type State } from "../oci/spec.js";
import { parseProcMounts } from "../platform/mountinfo.js";
import type { CgroupFs } from "../platform/cgroups.js";
import type { ProcessRunner } from "../platform/process.js";
import { inSpan } from "../platform/tracing.js";
import { ociToGrpcSpec } from "../protocol/oci-spec/convert.js";
import { inspectSources } from "../storage/apply.js";
import { planContainerStorage, sourcesToInspect } from "../storage/plan.js";
import { guestSpec } from "./guest-spec.js";
import { noPodNetwork, type NetworkLink, type PodNetwork, type PodNetworkPort } from "./pod-network.js";
import { checkHooks, runHooks } from "./hooks.js";
import { runDirScope, type StateStore } from "./persist.js";
import { PodCgroup } from "./pod-cgroup.js";
import { parseCgroupsPath } from "./pod-cgroup-plan.js";
import { Sandbox, type PreparedContainer, type SandboxDeps, type SandboxVmConfig } from "./sandbox.js";

export interface CreatePathDeps extends SandboxDeps {
  readonly runner: ProcessRunner;
  readonly netns: NetnsPort;
  /** Wires the pod's netns to the VM (taps mirrored to its interfaces). */
  readonly network: PodNetworkPort;
  readonly store: StateStore;
  readonly readProcMounts: () => Promise<string>;
  /**
   * The VM for this pod, from the configuration (`configPath` instead of the looked-up one when given)
   * and the sandbox container's annotations.
   */
  readonly resolveVm: (spec: Spec, configPath?: string) => Promise<SandboxVmConfig>;
  /**
   * The host's cgroup filesystems: the sandbox's service and QEMU join its `linux.cgroupsPath`
   * (sandbox_cgroup_only). Absent: the host's cgroups are left alone (component tests of other parts).
   */
  readonly cgroups?: CgroupFs;
}

/** The sandbox's network namespace as created or joined. */
export interface PodNetns {
  readonly path: string;
  /** Whether we created it (and so remove it). */
  readonly created: boolean;
  /** The name under /var/run/netns when created. */
  readonly name?: string;
  /** The taps made in it for the VM (removed at teardown; the namespace's own interfaces are left). */
  readonly links?: readonly NetworkLink[];
}

/**
 * Checks and plans one container without touching anything: its hooks, its mounts (sources inspected,
 * storage planned), and the guest spec converted to the wire (numbers in range). Throws the first
 * problem, naming the field.
 */
export async function prepareContainer(
  deps: CreatePathDeps,
  c: { sandboxId: string; containerId: string; bundle: Bundle; isSandbox: boolean },
  vmNetwork?: SandboxVmConfig["network"],
  opts: { readonly dropSeccomp?: boolean } = {},
): Promise<PreparedContainer> {
  const { spec } = c.bundle;
  if (c.isSandbox && !(vmNetwork?.disableNewNetns ?? false)) planNetns(spec, c.sandboxId);
  if (c.isSandbox && deps.cgroups !== undefined) {
    parseCgroupsPath(spec.linux?.cgroupsPath, c.sandboxId);
  }
  const hookKinds = c.isSandbox ? (["prestart", "createRuntime"] as const) : (["prestart"] as const);
  for (const kind of hookKinds) await checkHooks(kind, spec.hooks?.[kind] ?? []);
  const mounts = spec.mounts ?? [];
  const storage = planContainerStorage({
    sandboxId: c.sandboxId,
    containerId: c.containerId,
    isSandboxContainer: c.isSandbox,
    mounts,
    procMounts: parseProcMounts(await deps.readProcMounts()),
    sources: await inspectSources(sourcesToInspect(mounts)),
  });
  const guest = ociToGrpcSpec(
    guestSpec({ containerId: c.containerId, spec, mounts: storage.mounts, dropSeccomp: opts.dropSeccomp === true }),
  );
  return { containerId: c.containerId, rootfs: c.bundle.rootfs, storage, spec: guest };
}

/** The OCI state hooks get on stdin. */
export function hookState(id: string, bundle: Bundle, status: State["status"], pid: number): State {
  return {
    ociVersion,
    id,
    status,
    pid,
    bundle: bundle.dir,
    ...(bundle.spec.annotations === undefined ? {} : { annotations: bundle.spec.annotations }),
  };
}

/**
 * Makes the sandbox: its host cgroup (joined by this service, so QEMU and every helper it starts are
 * born in it; `onCgroup` saves it before the service joins), its network namespace, its prestart and createRuntime hooks (in the runtime's
 * namespace, before the VM exists; each failure names its own kind), then the namespace's interfaces
 * wired to taps (after the hooks: a hook may be what gives the namespace its interfaces, as Docker's
 * does), then the VM with one NIC per tap. Every step's undo goes on `undo`; `onNetns` is called each
 * time there is more to save (the namespace, then its taps).
 */
export async function bootSandbox(
  deps: CreatePathDeps,
  s: { id: string; runDir: string; bundle: Bundle; vm: SandboxVmConfig; pid: number },
  undo: CleanupStack,
  signal: AbortSignal,
  onNetns: (netns: PodNetns) => Promise<void>,
  onCgroup: (cgroup: PodCgroup) => Promise<void> = async () => {},
): Promise<{ sandbox: Sandbox; netns: PodNetns | undefined; cgroup: PodCgroup | undefined }> {
  const fs = deps.cgroups;
  const cgroup =
    fs === undefined
      ? undefined
      : await inSpan("cgroup", {}, () =>
          PodCgroup.create(
            fs,
            {
              target: parseCgroupsPath(s.bundle.spec.linux?.cgroupsPath, s.id, runDirScope(s.runDir)),
              // The sandbox container's limits are its own, enforced in the guest: on the host cgroup they
              // would hold QEMU (hundreds of MB) to a container's 64 MiB and OOM-kill the VM. The pod's
              // limit with the VM's overhead is the kubelet's, on the parent (RuntimeClass overhead).
              resources: undefined,
              pid: s.pid,
            },
            undo,
            onCgroup,
          ),
        );
  if (cgroup !== undefined) {
    deps.logger.info("joined the sandbox's cgroup", { sandboxId: s.id, cgroups: cgroup.persisted().leaves.join(" ") });
  }
  const net = s.vm.network ?? { model: "none", disableNewNetns: false };
  // Kata's disable_new_netns: the service and QEMU stay in the runtime's namespace, and so no NIC.
  let netns = net.disableNewNetns
    ? undefined
    : await inSpan("netns", {}, () => setupNetns(deps, s.bundle.spec, s.id, runDirScope(s.runDir), undo, signal));
  // Saved before anything else is made: a service killed from here on leaves state that names it.
  if (netns !== undefined) await onNetns(netns);
  for (const kind of ["prestart", "createRuntime"] as const) {
    const hooks = s.bundle.spec.hooks?.[kind] ?? [];
    await inSpan(`${kind}Hooks`, { count: hooks.length }, () =>
      runHooks(deps, kind, hooks, hookState(s.id, s.bundle, "creating", s.pid), {
        netnsPath: netns?.path,
        signal,
      }),
    );
  }
  let network: PodNetwork = noPodNetwork;
  if (netns !== undefined && net.model !== "none") {
    const nsPath = netns.path;
    network = await inSpan("network", { model: net.model }, () => deps.network.setup(nsPath, net.model, undo, signal));
    if (network.links.length > 0) {
      netns = { ...netns, links: network.links };
      await onNetns(netns);
    }
  }
  const sandbox = await inSpan("startVm", { machineType: s.vm.machineType, memoryMiB: s.vm.memoryMiB }, () =>
    Sandbox.create(
      deps,
      {
        id: s.id,
        runDir: s.runDir,
        hostname: s.bundle.spec.hostname ?? s.id,
        vm: s.vm,
        network,
        ...(netns === undefined ? {} : { netnsPath: netns.path }),
      },
      signal,
    ),
  );
  undo.defer(`destroy sandbox ${s.id}`, () => sandbox.destroy());
  // QEMU was born in the cgroup (its parent had joined); this only makes sure.
  await cgroup?.addProcess(sandbox.vm.pid);
  return { sandbox, netns, cgroup };
}

async function setupNetns(
  deps: CreatePathDeps,
  spec: Spec,
  sandboxId: string,
  scope: string,
  undo: CleanupStack,
  signal: AbortSignal,
): Promise<PodNetns> {
  const plan = planNetns(spec, sandboxId, scope);
  if (plan.kind === "join") {
    await deps.netns.checkJoinable(plan.path, signal);
    return { path: plan.path, created: false };
  }
  const nsPath = await deps.netns.create(plan.name, signal);
  undo.defer(`remove netns ${plan.name}`, () => deps.netns.remove(plan.name));
  return { path: nsPath, created: true, name: plan.name };
}
