// The template's warm-up (docs/factory.md#warm-up-tcg): before the template is saved, one throwaway
// container goes through the calls a real sandbox start makes (reseed and clock, CreateSandbox with its
// 9p share and shm, CreateContainer, StartContainer, WaitProcess, RemoveContainer, DestroySandbox), so
// what the guest keeps of it (the agent's compiled code, crun's and busybox's pages, kernel caches) is
// in every clone. DestroySandbox unmounts the share again: a mounted 9p export blocks the snapshot.

import { copyFile, mkdir, rm, symlink } from "node:fs/promises";
import path from "node:path";
import { Code, KataError } from "../base/errors.js";
import type { AgentApi } from "../agent-client/agent-client.js";
import { refreshClone } from "../factory/vm-factory.js";
import { defaultSpec } from "../oci/default-spec.js";
import { ociToGrpcSpec } from "../protocol/oci-spec/convert.js";
import { guestSpec } from "../sandbox/guest-spec.js";
import { defaultShmSizeBytes } from "../sandbox/sandbox.js";
import { planSandboxStorages } from "../storage/plan.js";
import type { SharedDir } from "../storage/shared-dir.js";

const containerId = "warmup";
/** The host's static busybox (busybox-static, as the image build needs): the warm-up's whole rootfs. */
const busybox = "/bin/busybox";

export interface WarmupOptions {
  readonly msize9p: number;
  readonly timeoutMs: number;
}

/** Runs the warm-up in the template whose 9p export is `shareDir`; returns what it ran, for the record. */
export async function warmupTemplate(
  shareDir: string,
  agent: AgentApi,
  opts: WarmupOptions,
  signal: AbortSignal,
): Promise<string> {
  const call = { signal, timeoutMs: opts.timeoutMs };
  const rootfs = path.join(shareDir, containerId, "rootfs");
  await mkdir(path.join(rootfs, "bin"), { recursive: true, mode: 0o755 });
  try {
    await copyFile(busybox, path.join(rootfs, "bin", "busybox"));
    await symlink("busybox", path.join(rootfs, "bin", "sh"));
    await refreshClone(agent, call);
    await agent.createSandbox(
      {
        sandboxId: "template",
        hostname: "template",
        storages: planSandboxStorages({ shmSizeBytes: defaultShmSizeBytes, msize9p: opts.msize9p }),
        kernelModules: [],
      },
      call,
    );
    const spec = ociToGrpcSpec(guestSpec({ containerId, spec: defaultSpec({ args: ["/bin/sh", "-c", "true"] }) }));
    await agent.createContainer({ containerId, execId: containerId, OCI: spec, storages: [] }, call);
    await agent.startContainer({ containerId }, call);
    const { status } = await agent.waitProcess({ containerId, execId: containerId }, call);
    if (status !== 0) throw new KataError(Code.Internal, `the warm-up container exited with status ${status}`);
    await agent.removeContainer({ containerId, timeout: 5 }, call);
    await agent.destroySandbox({}, call);
  } finally {
    await rm(path.join(shareDir, containerId), { recursive: true, force: true });
  }
  return "container: sh -c true";
}

/**
 * The warm-up of a cached VM: its 9p export is a share's read-only view, so the container's rootfs is
 * staged in `stagingDir` and bound read-write into the share, as a sandbox's rootfs is.
 */
export async function warmupCachedVm(
  share: SharedDir,
  stagingDir: string,
  agent: AgentApi,
  opts: WarmupOptions,
  signal: AbortSignal,
): Promise<string> {
  const relative = path.join(containerId, "rootfs");
  const staged = path.join(stagingDir, relative);
  await mkdir(staged, { recursive: true, mode: 0o700 });
  try {
    await share.bindDir(staged, relative, false, signal);
    try {
      return await warmupTemplate(stagingDir, agent, opts, signal);
    } finally {
      await share.unbind(relative);
    }
  } finally {
    await rm(stagingDir, { recursive: true, force: true });
  }
}
