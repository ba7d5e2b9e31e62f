// The host's cgroup filesystems: which layout this host has (v1, hybrid or unified), where each
// hierarchy is mounted, and where this process sits in it. Detection is pure (it reads the text of
// /proc/self/mountinfo and /proc/self/cgroup); the file operations go through a small port so the pod's
// cgroup code can be tested with a fake, and the real port refuses to act outside a cgroup filesystem.

import { lstat, mkdir, open, readFile, rmdir, statfs } from "node:fs/promises";
import path from "node:path";
import { Code, KataError, errnoOf } from "../base/errors.js";
import { parseMountInfo } from "./mountinfo.js";

/** The v1 controllers a sandbox's cgroup joins (when mounted); others are left as the caller's. */
export const v1Controllers = ["cpu", "cpuacct", "cpuset", "memory", "pids", "devices"] as const;
/** The v2 controllers enabled for a sandbox's cgroup (when the host has them). */
export const v2Controllers = ["cpu", "cpuset", "memory", "pids"] as const;

/** One mounted hierarchy: its controllers, where it is mounted, and this process's cgroup in it. */
export interface Hierarchy {
  /** v1: the controllers mounted together ("cpu", "cpuacct"); v2: empty. */
  readonly controllers: readonly string[];
  readonly mountPoint: string;
  /** The cgroup the mount shows at its mount point ("/" unless a subtree was bind-mounted). */
  readonly mountRoot: string;
  /** This process's cgroup in the hierarchy, as /proc/self/cgroup names it. */
  readonly ownPath: string;
}

export type CgroupLayout =
  | { readonly version: 1; readonly hierarchies: readonly Hierarchy[] }
  | { readonly version: 2; readonly hierarchies: readonly [Hierarchy] };

/**
 * The layout from /proc/self/mountinfo and /proc/self/cgroup. A host with any v1 hierarchy of a
 * controller we use is v1 (a hybrid host's cgroup2 mount, with no controllers, is not used); a host with
 * only cgroup2 is v2.
 */
export function detectLayout(mountInfo: string, selfCgroup: string): CgroupLayout {
  const own = parseSelfCgroup(selfCgroup);
  const mounts = parseMountInfo(mountInfo);
  const v1: Hierarchy[] = [];
  const seen = new Set<string>();
  for (const m of mounts) {
    if (m.fstype !== "cgroup") continue;
    const controllers = m.options.filter((o) => (v1Controllers as readonly string[]).includes(o)).sort();
    const key = controllers.join(",");
    if (controllers.length === 0 || seen.has(key)) continue;
    seen.add(key);
    const ownPath = own.v1.get(key);
    if (ownPath === undefined) {
      throw new KataError(Code.FailedPrecondition, `/proc/self/cgroup has no line for the ${key} hierarchy`);
    }
    v1.push({ controllers, mountPoint: m.mountPoint, mountRoot: mountRootOf(mountInfo, m.mountPoint), ownPath });
  }
  if (v1.length > 0) return { version: 1, hierarchies: v1 };
  const unified = mounts.find((m) => m.fstype === "cgroup2");
  if (unified === undefined) throw new KataError(Code.FailedPrecondition, "no cgroup filesystem is mounted");
  if (own.v2 === undefined) throw new KataError(Code.FailedPrecondition, "/proc/self/cgroup has no cgroup v2 line");
  return {
    version: 2,
    hierarchies: [
      {
        controllers: [],
        mountPoint: unified.mountPoint,
        mountRoot: mountRootOf(mountInfo, unified.mountPoint),
        ownPath: own.v2,
      },
    ],
  };
}

/** "4:cpu,cpuacct:/a" lines: v1 keyed by the sorted controllers we use; "0::/a" is v2. */
function parseSelfCgroup(text: string): { v1: Map<string, string>; v2: string | undefined } {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of text.split("\n")) {
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line);
    if (m === null) continue;
    const [, list = "", p = "/"] = m;
    if (list === "") {
      v2 = p;
      continue;
    }
    const key = list
      .split(",")
      .filter((c) => (v1Controllers as readonly string[]).includes(c))
      .sort()
      .join(",");
    if (key !== "") v1.set(key, p);
  }
  return { v1, v2 };
}

/** Field 4 of the mountinfo line of `mountPoint` (parseMountInfo does not keep it). */
function mountRootOf(mountInfo: string, mountPoint: string): string {
  for (const line of mountInfo.split("\n")) {
    const f = line.split(" ");
    if (f[4] !== undefined && f[4].replace(/\\040/g, " ") === mountPoint) return f[3] ?? "/";
  }
  return "/";
}

/** Where cgroup `cgPath` (as /proc/<pid>/cgroup names it) is in the filesystem, or undefined when not under the mount. */
export function dirOfCgroup(h: Hierarchy, cgPath: string): string | undefined {
  const rel = path.posix.relative(h.mountRoot, cgPath);
  if (rel.startsWith("..") || path.posix.isAbsolute(rel)) return undefined;
  return rel === "" ? h.mountPoint : path.posix.join(h.mountPoint, rel);
}

/** The file operations on cgroup filesystems the pod's cgroup needs. */
export interface CgroupFs {
  readMountInfo(): Promise<string>;
  readSelfCgroup(): Promise<string>;
  /** A directory's device, undefined when it does not exist; throws when it is not a directory (a symlink). */
  dirDevice(dir: string): Promise<number | undefined>;
  /** Makes `dir` (its parent exists): true when made, false when it already existed. */
  mkdir(dir: string): Promise<boolean>;
  /** Removes an empty cgroup directory; never recursive. */
  rmdir(dir: string): Promise<void>;
  read(file: string): Promise<string>;
  write(file: string, value: string): Promise<void>;
  /** Whether `dir` is on a cgroup (v1 or v2) filesystem. */
  isCgroupFs(dir: string): Promise<boolean>;
}

const cgroupMagic = 0x27e0eb;
const cgroup2Magic = 0x63677270;

export const hostCgroupFs: CgroupFs = {
  readMountInfo: () => readFile("/proc/self/mountinfo", "utf8"),
  readSelfCgroup: () => readFile("/proc/self/cgroup", "utf8"),
  async dirDevice(dir) {
    let st;
    try {
      st = await lstat(dir);
    } catch (e) {
      if (errnoOf(e) === "ENOENT") return undefined;
      throw new KataError(Code.Internal, `lstat ${dir}`, { cause: e });
    }
    if (!st.isDirectory()) throw new KataError(Code.FailedPrecondition, `${dir} is not a directory`);
    return st.dev;
  },
  async mkdir(dir) {
    try {
      await mkdir(dir, { mode: 0o755 });
      return true;
    } catch (e) {
      if (errnoOf(e) === "EEXIST") return false;
      throw new KataError(Code.Internal, `create cgroup ${dir}`, { cause: e });
    }
  },
  async rmdir(dir) {
    await rmdir(dir);
  },
  async read(file) {
    return readFile(file, "utf8");
  },
  async write(file, value) {
    // One write(2) of the whole value: the kernel parses each write on its own.
    const fh = await open(file, "w");
    try {
      await fh.write(value);
    } finally {
      await fh.close();
    }
  },
  async isCgroupFs(dir) {
    const st = await statfs(dir);
    return st.type === cgroupMagic || st.type === cgroup2Magic;
  },
};
