// Storage planning for one container (Kata's kataAgent.createContainer mount handling): the guest
// spec's mounts, the agent Storage messages, and the host binds under the share's mounts/ dir. Pure:
// the applier gathers /proc/mounts and each bind source's lstat/realpath first (sourcesToInspect).
//
//   guest-provided type (proc, sysfs, tmpfs, ...)   kept as is
//   bind, source under /proc or /sys                dropped: never shared (runtime#1591)
//   bind, pod container, …/kubernetes.io~empty-dir/<v>  tmpfs → ephemeral, hugetlbfs → ephemeral
//                                                   hugetlbfs, otherwise local (empty-dir.ts)
//   bind at /dev/shm                                the sandbox's shm
//   bind at /dev/..., source not a regular file     dropped: the guest has its own /dev (isHostDevice)
//   any other bind                                  shared: host bind at mounts/<cid>-<hash>-<base>

import { createHash } from "node:crypto";
import path from "node:path";
import { Code, KataError, invariant } from "../base/errors.js";
import type { Mount } from "../oci/spec.js";
import type { MountEntry } from "../platform/mountinfo.js";
import { guestSharedDir, guestSharedPath, guestShmDir, sharedFsTag } from "../protocol/guest-paths.js";
import {
  emptyDirVolume,
  ephemeralDriver,
  isValidVolumeName,
  mountAt,
  planEmptyDir,
  staysInVolume,
  trimTrailingSlashes,
  type StorageInit,
} from "./empty-dir.js";

export type { StorageInit } from "./empty-dir.js";

export interface SourceInfo {
  /** From lstat: a symlink is reported as such, not followed. */
  readonly kind: "dir" | "file" | "symlink" | "missing" | "other";
  readonly gid: number;
  /** realpath(source); "" when it cannot be resolved (a dangling symlink or a loop). */
  readonly realPath: string;
}

export interface StoragePlanInput {
  readonly sandboxId: string;
  readonly containerId: string;
  /** emptyDir rules apply to pod containers only, never the sandbox (pause) container. */
  readonly isSandboxContainer: boolean;
  /** OCI spec mounts, host view. */
  readonly mounts: readonly Mount[];
  /** Parsed /proc/mounts of the host (decoded paths). */
  readonly procMounts: readonly MountEntry[];
  /** lstat/realpath/gid of each path of sourcesToInspect (and of each symlink's target). */
  readonly sources: ReadonlyMap<string, SourceInfo>;
}

export interface HostBind {
  readonly source: string;
  /** Name under the share's mounts/ dir, also the name under guestSharedDir. */
  readonly relative: string;
  readonly readonly: boolean;
  readonly kind: "dir" | "file";
}

/**
 * A directory the host makes before the guest uses it: a disk emptyDir in the sandbox's rootfs, mode and
 * fsGroup (setgid) set on the host, since QEMU may not set a setgid bit for the guest (docs/security.md).
 */
export interface HostDir {
  /** The bind it is made in, under the share's mounts/ dir: "<sandboxId>/rootfs". */
  readonly within: string;
  /** Below `within`: "local/<volume>". */
  readonly relative: string;
  /** Permission bits, setgid included when there is a group. */
  readonly mode: number;
  readonly gid?: number;
}

export interface StoragePlan {
  /** The guest spec's mounts: sources rewritten to guest paths, system mounts dropped. */
  readonly mounts: Mount[];
  /** Agent Storage messages for CreateContainer. */
  readonly storages: StorageInit[];
  /** What the host must bind under the share's mounts/ dir. */
  readonly binds: HostBind[];
  /** What the host must make in the share before the guest creates the container. */
  readonly dirs: HostDir[];
}

/** Mount types the guest kernel provides itself; the host has nothing to share for them. */
const guestProvidedTypes: ReadonlySet<string> = new Set([
  "proc",
  "sysfs",
  "tmpfs",
  "devpts",
  "mqueue",
  "cgroup",
  "cgroup2",
]);

/** Options of CRI's /dev/shm bind that still mean something on the guest's shm. */
const shmKeptOptions: ReadonlySet<string> = new Set(["ro", "nosuid", "nodev", "noexec"]);

/** CRI sends type "bind" with options rbind,...; docker may send type "none" with "bind". */
export function isBindMount(m: Mount): boolean {
  return m.type === "bind" || (m.options ?? []).some((o) => o === "bind" || o === "rbind");
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir + "/");
}

/** Host pseudo filesystems: binding them into the VM would expose the host kernel's view (runtime#1591). */
function isSystemPath(p: string): boolean {
  return isUnder(p, "/proc") || isUnder(p, "/sys");
}

/** The bind options for the guest mount: the caller's, plus rbind when no bind flag is there. */
function guestBindOptions(options: readonly string[] | undefined): string[] {
  const opts = [...(options ?? [])];
  return opts.includes("bind") || opts.includes("rbind") ? opts : ["rbind", ...opts];
}

/** A shared file's name is one path component: NAME_MAX bytes. */
const maxNameBytes = 255;

/** The longest prefix of `s` (whole characters) that fits in `maxBytes` of UTF-8. */
function fitUtf8(s: string, maxBytes: number): string {
  let out = "";
  let used = 0;
  for (const ch of s) {
    used += Buffer.byteLength(ch);
    if (used > maxBytes) break;
    out += ch;
  }
  return out;
}

/**
 * Where a container's volume is bound in the share: below `<cid>/volumes/`, a name space that cannot
 * meet a rootfs (`<cid>/rootfs`) whatever the container ids are, so no bind ever lands inside another
 * container's (guest-writable) volume (CVE-2020-2026 class). Kata names shared files
 * <cid>-<16 random hex>-<basename>; ours are derived, so plans are reproducible. The basename is only
 * there for people reading the share (the hash keeps names apart): it is cut to fit one path component.
 */
function sharedName(containerId: string, index: number, destination: string): string {
  const hash = createHash("sha256").update(`${containerId}\0${index}\0${destination}`).digest("hex").slice(0, 16);
  const name = `${hash}-`;
  return `${containerId}/volumes/${name}${fitUtf8(path.posix.basename(destination), maxNameBytes - name.length)}`;
}

/** An absolute path with no NUL: the kernel cuts a path at NUL, and node's fs functions throw a TypeError. */
function isAbsolutePath(p: string): boolean {
  return p.startsWith("/") && !p.includes("\0");
}

/** The paths the applier must inspect (lstat, realpath, gid) before planning. */
export function sourcesToInspect(mounts: readonly Mount[]): string[] {
  const out = new Set<string>();
  for (const m of mounts) {
    if (!isBindMount(m) || m.source === undefined || !isAbsolutePath(m.source)) continue;
    const source = trimTrailingSlashes(m.source);
    if (isSystemPath(source)) continue;
    // CRI's /dev/shm source is replaced by the guest's shm, unless it is an emptyDir.
    if (m.destination === "/dev/shm" && emptyDirVolume(source) === undefined) continue;
    out.add(source);
  }
  return [...out];
}

interface Outputs {
  readonly mounts: Mount[];
  readonly storages: StorageInit[];
  readonly binds: HostBind[];
  readonly dirs: HostDir[];
  readonly issues: string[];
}

function planEmptyDirMount(input: StoragePlanInput, out: Outputs, i: number, source: string, volume: string): void {
  const m = input.mounts[i];
  invariant(m !== undefined, "mount index in range");
  const where = `mounts[${i}].source ${source}`;
  if (!isValidVolumeName(volume)) {
    out.issues.push(`${where}: invalid emptyDir volume name ${JSON.stringify(volume)}`);
    return;
  }
  const info = input.sources.get(source);
  invariant(info !== undefined, `source ${source} was inspected`);
  if (info.kind === "missing") {
    out.issues.push(`${where} does not exist`);
    return;
  }
  // The volume is recreated in the guest, so nothing of the host follows; but a symlinked or
  // redirected volume is not what kubelet made, and its gid and mount would be someone else's.
  if (info.kind === "symlink") {
    out.issues.push(
      `${where} is a symlink to ${info.realPath || "nowhere"}: an emptyDir must be a directory, refusing`,
    );
    return;
  }
  if (info.kind !== "dir") {
    out.issues.push(`${where} is not a directory: refusing it as an emptyDir`);
    return;
  }
  if (!staysInVolume(info.realPath, volume)) {
    out.issues.push(`${where} resolves to ${info.realPath}, out of its volume: refusing`);
    return;
  }
  const hostMount = mountAt(input.procMounts, info.realPath) ?? mountAt(input.procMounts, source);
  const planned = planEmptyDir({ sandboxId: input.sandboxId, volume, hostMount, gid: info.gid });
  if ("error" in planned) {
    out.issues.push(`${where}: ${planned.error}`);
    return;
  }
  // Two mounts of one volume in a container need one storage: the agent counts references per storage.
  if (!out.storages.some((s) => s.mountPoint === planned.guestPath)) out.storages.push(planned.storage);
  if (planned.hostDir !== undefined && !out.dirs.some((d) => d.relative === planned.hostDir?.relative)) {
    out.dirs.push(planned.hostDir);
  }
  out.mounts.push({ ...m, type: "bind", source: planned.guestPath, options: guestBindOptions(m.options) });
}

function planSharedBind(input: StoragePlanInput, out: Outputs, i: number, source: string): void {
  const m = input.mounts[i];
  invariant(m !== undefined, "mount index in range");
  const where = `mounts[${i}].source ${source}`;
  const info = input.sources.get(source);
  invariant(info !== undefined, `source ${source} was inspected`);
  if (info.kind === "missing") {
    out.issues.push(`${where} does not exist`);
    return;
  }
  // A symlink is followed, as the kernel would (Kata: EvalSymlinks); its target is what gets bound.
  let target = info;
  if (info.kind === "symlink") {
    if (info.realPath === "") {
      out.issues.push(`${where} is a dangling symlink`);
      return;
    }
    const resolved = input.sources.get(info.realPath);
    invariant(resolved !== undefined, `symlink target ${info.realPath} was inspected`);
    target = resolved;
  }
  if (isSystemPath(info.realPath)) return;
  if (isUnder(m.destination, "/dev") && target.kind !== "file") return;
  if (target.kind !== "dir" && target.kind !== "file") {
    out.issues.push(
      `${where} is not a regular file or directory: sockets, fifos and devices cannot be shared with the VM`,
    );
    return;
  }
  const relative = sharedName(input.containerId, i, m.destination);
  const options = m.options ?? [];
  out.binds.push({ source: info.realPath, relative, readonly: options.includes("ro"), kind: target.kind });
  out.mounts.push({ ...m, type: "bind", source: guestSharedPath(relative), options: guestBindOptions(options) });
}

/** Plans one container's mounts; throws one INVALID_ARGUMENT naming every bad mount. */
export function planContainerStorage(input: StoragePlanInput): StoragePlan {
  const out: Outputs = { mounts: [], storages: [], binds: [], dirs: [], issues: [] };
  input.mounts.forEach((m, i) => {
    const d = m.destination;
    // The destination's last element names the host bind (sharedName): no NUL may reach a file name.
    if (!isAbsolutePath(d) || d.split("/").includes("..")) {
      out.issues.push(`mounts[${i}].destination ${JSON.stringify(d)} must be absolute, without ".." elements or NUL`);
      return;
    }
    if (!isBindMount(m)) {
      if (m.type !== undefined && guestProvidedTypes.has(m.type)) {
        out.mounts.push({ ...m });
      } else {
        out.issues.push(
          `mounts[${i}] at ${d}: type ${JSON.stringify(m.type ?? "")} is not supported (only bind and ${[...guestProvidedTypes].join(", ")})`,
        );
      }
      return;
    }
    if (m.source === undefined || !isAbsolutePath(m.source)) {
      out.issues.push(
        `mounts[${i}].source ${JSON.stringify(m.source ?? "")} must be an absolute host path without NUL`,
      );
      return;
    }
    const source = trimTrailingSlashes(m.source);
    if (isSystemPath(source)) return;
    const volume = input.isSandboxContainer ? undefined : emptyDirVolume(source);
    if (volume !== undefined) {
      planEmptyDirMount(input, out, i, source, volume);
    } else if (d === "/dev/shm") {
      // CRI's sandbox shm: every container of the pod shares the guest's (Kata's handleShm).
      const kept = (m.options ?? []).filter((o) => shmKeptOptions.has(o));
      out.mounts.push({ ...m, type: "bind", source: guestShmDir, options: ["rbind", ...kept] });
    } else {
      planSharedBind(input, out, i, source);
    }
  });
  if (out.issues.length > 0) {
    throw new KataError(
      Code.InvalidArgument,
      `container ${input.containerId}: invalid mounts: ${out.issues.join("; ")}`,
      { details: { containerId: input.containerId, issues: out.issues.length } },
    );
  }
  return { mounts: out.mounts, storages: out.storages, binds: out.binds, dirs: out.dirs };
}

/** The storages of CreateSandbox: the share (9p) and the pod's shm, a guest tmpfs every container binds. */
export function planSandboxStorages(opts: { shmSizeBytes: number; msize9p: number }): StorageInit[] {
  const { shmSizeBytes, msize9p } = opts;
  if (!Number.isSafeInteger(shmSizeBytes) || shmSizeBytes <= 0) {
    throw new KataError(Code.InvalidArgument, `shm size ${shmSizeBytes} must be a positive number of bytes`);
  }
  if (!Number.isSafeInteger(msize9p) || msize9p <= 0) {
    throw new KataError(Code.InvalidArgument, `9p msize ${msize9p} must be a positive number of bytes`);
  }
  return [
    {
      driver: "9p",
      source: sharedFsTag,
      fstype: "9p",
      options: ["trans=virtio", "version=9p2000.L", `msize=${msize9p}`, "cache=mmap", "nodev"],
      mountPoint: guestSharedDir,
    },
    {
      driver: ephemeralDriver,
      source: "shm",
      fstype: "tmpfs",
      options: ["noexec", "nosuid", "nodev", "mode=1777", `size=${shmSizeBytes}`],
      mountPoint: guestShmDir,
    },
  ];
}
