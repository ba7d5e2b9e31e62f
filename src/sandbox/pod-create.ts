// Creating one container of a pod, with the pod's lock held: checks, then the sandbox's VM when it is
// the sandbox container, then the container in the guest. Everything made is undone on failure, and
// the pod learns of the container (and of its sandbox) only once all of it exists.

import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, wrap } from "../base/errors.js";
import { containerRole } from "../oci/annotations.js";
import { loadBundle } from "../oci/bundle.js";
import { inSpan } from "../platform/tracing.js";
import { bootSandbox, prepareContainer, type PodNetns } from "./create-path.js";
import { runHooks } from "./hooks.js";
import type { PodCgroup } from "./pod-cgroup.js";
import { PodContainer } from "./pod-container.js";
import type { PodCore } from "./pod-core.js";
import { PodProcess, type StdioPaths } from "./pod-process.js";
import type { Sandbox } from "./sandbox.js";

export interface CreateRequest {
  readonly id: string;
  readonly bundle: string;
  readonly stdio: StdioPaths;
  /**
   * The configuration file the runtime options name (containerd's ConfigPath). A sandbox's VM is made
   * from it instead of the looked-up one; a pod container's is ignored, as Kata: its sandbox's applies.
   */
  readonly configPath?: string;
}

/** Creates the container; returns its type. `timings` receives the sandbox's boot phases. */
export async function createInPod(
  core: PodCore,
  req: CreateRequest,
  timings: Record<string, number>,
  signal: AbortSignal,
): Promise<"sandbox" | "container"> {
  const { id } = req;
  const bundle = await loadBundle(req.bundle);
  const role = containerRole(bundle.spec, id);
  if (role.sandboxId !== core.id) {
    throw new KataError(Code.InvalidArgument, `container ${id} belongs to sandbox ${role.sandboxId}, not ${core.id}`);
  }
  if (core.containers.has(id)) throw new KataError(Code.AlreadyExists, `container ${id} already exists`);
  const isSandbox = role.type === "sandbox";
  if (isSandbox && core.sandbox !== undefined) {
    throw new KataError(Code.AlreadyExists, `sandbox ${core.id} already exists: cannot create another sandbox in it`);
  }
  if (!isSandbox && core.sandbox === undefined) {
    throw new KataError(
      Code.FailedPrecondition,
      `sandbox ${core.id} is not created yet: create its sandbox container first`,
    );
  }
  const { deps } = core;
  const undo = new CleanupStack();
  try {
    // Everything that can be checked is checked before anything is made, the VM above all.
    const vm = isSandbox ? await deps.resolveVm(bundle.spec, req.configPath) : undefined;
    if (vm !== undefined) core.disableGuestSeccomp = vm.disableGuestSeccomp === true;
    if (!isSandbox && req.configPath !== undefined) {
      core.log.info("runtime options' config path ignored: a pod container runs with its sandbox's configuration", {
        containerId: id,
        configPath: req.configPath,
      });
    }
    const prepared = await prepareContainer(
      deps,
      { sandboxId: core.id, containerId: id, bundle, isSandbox },
      vm?.network,
      { dropSeccomp: core.disableGuestSeccomp },
    );
    // On a terminal, stdout and stderr are one stream (the pty's).
    const terminal = bundle.spec.process?.terminal === true;
    const stdio = terminal ? { ...req.stdio, stderr: "", terminal } : req.stdio;
    const init = new PodProcess(id, id, stdio, core.log, { initial: "creating" });
    await init.open();
    undo.defer(`close stdio of ${id}`, () => {
      init.releaseStdio();
    });
    // Saved as "creating" before the VM boots (or grows), so `state` answers as runc's does during a
    // create. For a sandbox it is also the first write of its state: a full (or read-only) state
    // directory fails here, naming it, not after a boot (or as QEMU's "cannot create PID file"). The
    // pod's teardown after a failed sandbox create removes it all.
    const createdAt = new Date();
    core.creating.set(id, PodContainer.creating(id, bundle, role.type, createdAt));
    undo.defer(`forget creating ${id}`, async () => {
      core.creating.delete(id);
      if (!isSandbox) await core.persist();
    });
    await core.persist();
    // After the state: a container found by its mapping always has a saved entry.
    await deps.store.addMapping(id, core.id);
    undo.defer(`remove mapping of ${id}`, () => deps.store.removeMapping(id));

    let sandbox = core.sandbox;
    if (vm !== undefined) {
      const startedAt = deps.now();
      const s = { id: core.id, runDir: core.opts.runDir, bundle, vm, pid: core.opts.pid };
      undo.defer("forget the network namespace", () => {
        core.netns = undefined;
      });
      const onNetns = async (netns: PodNetns): Promise<void> => {
        core.netns = netns;
        await core.persist();
      };
      undo.defer("forget the cgroup", () => {
        core.cgroup = undefined;
      });
      const onCgroup = async (cgroup: PodCgroup): Promise<void> => {
        core.cgroup = cgroup;
        await core.persist();
      };
      const made = await inSpan("createSandbox", { sandboxId: core.id }, () =>
        bootSandbox(deps, s, undo, signal, onNetns, onCgroup),
      );
      sandbox = made.sandbox;
      for (const [phase, ms] of Object.entries(sandbox.timings)) timings[phase] = startedAt + ms;
    }
    // CAST: set just above for a sandbox; checked at the top for a pod container.
    const sb = sandbox as Sandbox;
    if (!isSandbox) {
      // Before the container exists, so it starts with its CPUs and memory online. What was added stays
      // if creating it fails: the VM never shrinks (docs/configuration.md).
      await core.growVm({ id, resources: bundle.spec.linux?.resources }, signal);
    }
    await inSpan("createContainer", { sandboxId: core.id, containerId: id }, () =>
      sb.createContainer(prepared, signal),
    );
    undo.defer(`remove container ${id}`, () => sb.removeContainer(id));
    if (!isSandbox) {
      // Kata runs a pod container's prestart hooks after it is created, in the pod's netns.
      const state = core.hookState(id, bundle, "created");
      const hooks = bundle.spec.hooks?.prestart ?? [];
      await runHooks(deps, "prestart", hooks, state, { netnsPath: core.netns?.path, signal });
    }
    init.cell.apply("created");
    core.creating.delete(id);
    core.containers.set(id, new PodContainer({ id, bundle, type: role.type, process: init, createdAt }));
    undo.defer(`forget container ${id}`, () => {
      core.containers.delete(id);
    });
    if (isSandbox) {
      core.sandbox = sb;
      undo.defer("forget the sandbox", () => {
        core.sandbox = undefined;
      });
      core.watch(sb);
    }
    await core.persist();
    undo.release();
    return role.type;
  } catch (e) {
    return undo.unwind(wrap(e, `create container ${id}`));
  }
}
