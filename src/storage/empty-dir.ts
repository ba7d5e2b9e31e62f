// Kubernetes emptyDir volumes, recreated inside the VM instead of shared from the host (Kata's
// SetEphemeralStorageType, handleEphemeralStorage, handleHugepages and handleLocalStorage): a
// memory-backed volume becomes a guest tmpfs or hugetlbfs, a disk-backed one a directory in the
// sandbox's own storage. Pure: the caller passes the host's mount table and the inspected source.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { MountEntry } from "../platform/mountinfo.js";
import type { StorageSchema } from "../protocol/gen/agent_pb.js";
import { guestEphemeralVolumePath, guestLocalVolumePath } from "../protocol/guest-paths.js";

/** An agent Storage message as the host builds it (grpc.Storage). */
export type StorageInit = MessageInitShape<typeof StorageSchema>;

/** kubelet's plugin directory: /var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~empty-dir/<volume>. */
export const k8sEmptyDir = "kubernetes.io~empty-dir";

/** Storage drivers of the agent (Kata's KataEphemeralDevType and KataLocalDevType). */
export const ephemeralDriver = "ephemeral";
export const localDriver = "local";

/** The agent applies the volume's fsGroup from this option (Kata 2.x, kata#1580). */
export const fsGidOption = "fsgid";

/** Kata's localDirOptions: a pod volume is writable by every container user. */
const localDirMode = "mode=0777";

/** Removes trailing slashes, so "…/kubernetes.io~empty-dir/vol/" is still that volume (Kata missed it). */
export function trimTrailingSlashes(p: string): string {
  const t = p.replace(/\/+$/, "");
  return t === "" && p.startsWith("/") ? "/" : t;
}

/**
 * The volume name when `source` (trailing slashes trimmed) is kubelet-shaped: its second-to-last
 * element is exactly kubernetes.io~empty-dir. Like Kata: no regex, no prefix check, so any host path
 * of that shape counts (a hostPath shaped like that gets an empty guest directory, not its content).
 */
export function emptyDirVolume(source: string): string | undefined {
  const elements = source.split("/");
  if (elements.length < 2 || elements.at(-2) !== k8sEmptyDir) return undefined;
  return elements.at(-1);
}

export function isValidVolumeName(name: string): boolean {
  return name !== "" && name !== "." && name !== "..";
}

/**
 * True when `realPath` still names volume `name` of an emptyDir directory. Only the last two
 * elements are compared: a symlinked /var/lib/kubelet is a common layout and must keep working, but
 * a volume that resolves anywhere else has been redirected out of its volume.
 */
export function staysInVolume(realPath: string, name: string): boolean {
  const elements = realPath.split("/");
  return elements.at(-1) === name && elements.at(-2) === k8sEmptyDir;
}

/** The mount visible at exactly `mountPoint`: the last of a stack wins (Kata took the first line). */
export function mountAt(procMounts: readonly MountEntry[], mountPoint: string): MountEntry | undefined {
  return procMounts.findLast((e) => e.mountPoint === mountPoint);
}

const sizeUnits: Readonly<Record<string, number>> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/**
 * "2M" (as /proc/mounts shows hugetlbfs pagesize), "1G", "2048k", "2Mi", "2MiB" → bytes (binary units, as
 * Kata's units.RAMInBytes); undefined for anything else, including sizes past Number's exact integers.
 */
export function parseSizeBytes(s: string): number | undefined {
  const m = /^(\d+)(?:([kKmMgGtT])(?:i?[bB]|i)?|[bB])?$/.exec(s);
  if (m === null) return undefined;
  const [, digits = "", unit = ""] = m;
  const factor = sizeUnits[unit.toLowerCase()];
  if (factor === undefined) return undefined;
  // "10000T" is past 2^53: it would be sent on as an inexact float ("1.0995116277760001e+16").
  const bytes = Number(digits) * factor;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

export interface EmptyDirPlan {
  /** Where the volume lives in the guest: the container's mount binds this path. */
  readonly guestPath: string;
  readonly storage: StorageInit;
  /** A disk emptyDir's directory, made (mode, fsGroup) by the host in the sandbox's rootfs. */
  readonly hostDir?: {
    readonly within: string;
    readonly relative: string;
    readonly mode: number;
    readonly gid?: number;
  };
}

export interface EmptyDirInput {
  readonly sandboxId: string;
  readonly volume: string;
  /** The volume directory's host mount, if it is a mount point (tmpfs, hugetlbfs, or a disk). */
  readonly hostMount: MountEntry | undefined;
  /** Group of the host directory: kubelet chowns it to the pod's fsGroup. */
  readonly gid: number;
}

/** The Storage for one emptyDir, or an error message (a problem with the host mount). */
export function planEmptyDir(input: EmptyDirInput): EmptyDirPlan | { readonly error: string } {
  const { sandboxId, volume, hostMount, gid } = input;
  const fsGid = gid !== 0 ? [`${fsGidOption}=${gid}`] : [];
  const fstype = hostMount?.fstype;
  if (hostMount !== undefined && fstype === "tmpfs") {
    // Kata sends no size (kata#2438: sizeLimit lost, the guest tmpfs may take half the VM's memory);
    // kubelet mounts the tmpfs with size=<sizeLimit>, so keep it, and a non-default mode.
    const kept = hostMount.options.filter((o) => o.startsWith("size=") || o.startsWith("mode="));
    const guestPath = guestEphemeralVolumePath(volume);
    return {
      guestPath,
      storage: {
        driver: ephemeralDriver,
        source: "tmpfs",
        fstype: "tmpfs",
        options: [...kept, ...fsGid],
        mountPoint: guestPath,
        shared: true,
      },
    };
  }
  if (hostMount !== undefined && fstype === "hugetlbfs") {
    const pagesize = hostMount.options.find((o) => o.startsWith("pagesize="))?.slice("pagesize=".length);
    if (pagesize === undefined) return { error: `hugetlbfs mount ${hostMount.mountPoint} has no pagesize option` };
    const bytes = parseSizeBytes(pagesize);
    if (bytes === undefined || bytes === 0) {
      return { error: `hugetlbfs mount ${hostMount.mountPoint} has an invalid pagesize ${JSON.stringify(pagesize)}` };
    }
    const guestPath = guestEphemeralVolumePath(volume);
    return {
      guestPath,
      storage: {
        driver: ephemeralDriver,
        source: "nodev",
        fstype: "hugetlbfs",
        options: [`pagesize=${bytes}`],
        mountPoint: guestPath,
        shared: true,
      },
    };
  }
  // A disk emptyDir (a plain directory, or any other filesystem): created in the sandbox's own rootfs
  // in the guest, which lives in the pause container's storage (runtime#1818).
  const guestPath = guestLocalVolumePath(sandboxId, volume);
  return {
    guestPath,
    // 0777, and setgid with the fsGroup (Kata's localDirOptions and the kubelet's fsGroup rule).
    hostDir: {
      within: `${sandboxId}/rootfs`,
      relative: `local/${volume}`,
      mode: gid !== 0 ? 0o2777 : 0o777,
      ...(gid !== 0 ? { gid } : {}),
    },
    storage: {
      driver: localDriver,
      source: localDriver,
      fstype: localDriver,
      options: [localDirMode, ...fsGid],
      mountPoint: guestPath,
      shared: true,
    },
  };
}
