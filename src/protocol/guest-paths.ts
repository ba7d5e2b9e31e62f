// Guest paths both sides agree on (Kata-compatible): the host writes them into specs and storages,
// the agent creates and checks them.

/** The 9p/virtio-fs tag of the sandbox share, and where the agent mounts it. */
export const sharedFsTag = "kataShared";
export const guestSharedDir = "/run/kata-containers/shared/containers";

/** A container's rootfs as the guest sees it through the share. */
export function guestRootfsPath(containerId: string): string {
  return `${guestSharedDir}/${containerId}/rootfs`;
}

/** A file or directory the host bound at mounts/<relative> of the sandbox share, as the guest sees it. */
export function guestSharedPath(relative: string): string {
  return `${guestSharedDir}/${relative}`;
}

export const guestSandboxDir = "/run/kata-containers/sandbox";
export const guestEphemeralDir = `${guestSandboxDir}/ephemeral`;
export const guestShmDir = `${guestSandboxDir}/shm`;

/** Memory-backed (tmpfs or hugetlbfs) emptyDir created inside the VM. */
export function guestEphemeralVolumePath(volume: string): string {
  return `${guestEphemeralDir}/${volume}`;
}

/** Disk-backed emptyDir created inside the VM, in the sandbox's own storage. */
export function guestLocalVolumePath(sandboxId: string, volume: string): string {
  return `${guestSharedDir}/${sandboxId}/rootfs/local/${volume}`;
}

/** Where the agent keeps each container's bundle (config.json for crun), on guest tmpfs. */
export const guestBundlesDir = "/run/kata-ts/bundles";

/** virtio-serial port name of the agent channel (Kata's). */
export const agentPortName = "agent.channel.0";

/** Columns of the guest `ps` table (ListProcesses "table"), busybox's names; and how the CLI heads it. */
export const guestPsColumns = "pid,user,stat,rss,args";
export const guestPsHeader = "PID   USER     STAT   RSS COMMAND";
