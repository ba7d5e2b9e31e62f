// A fake cgroup filesystem for component tests: an in-memory tree of directories and files, where
// cgroup.procs holds the pids written to it, with failures to inject.

import path from "node:path";
import type { CgroupFs } from "../../src/platform/cgroups.js";

function errno(code: string): Error {
  return Object.assign(new Error(code), { code });
}

export const v1MountInfo = [
  "32 31 0:29 / /cg/cpu rw - cgroup cgroup rw,cpu,cpuacct",
  "34 31 0:31 / /cg/cpuset rw - cgroup cgroup rw,cpuset",
  "35 31 0:32 / /cg/memory rw - cgroup cgroup rw,memory",
].join("\n");
export const v1Self = "3:cpu,cpuacct:/\n2:cpuset:/\n1:memory:/home\n0::/\n";
export const v2MountInfo = "30 23 0:26 / /cg rw - cgroup2 cgroup2 rw\n";

/** Directories and their files; cgroup.procs holds the pids written there. */
export class FakeCgroupFs implements CgroupFs {
  readonly dirs = new Set<string>();
  readonly files = new Map<string, string>();
  readonly log: string[] = [];
  readonly failWrite = new Map<string, string>();
  /** rmdir of a dir fails EBUSY this many times first. */
  readonly busy = new Map<string, number>();
  readonly otherDevice = new Set<string>();
  readonly notCgroup = new Set<string>();

  readonly #mountInfo: string;
  readonly #self: string;

  constructor(mountInfo: string, self: string, dirs: string[]) {
    this.#mountInfo = mountInfo;
    this.#self = self;
    for (const d of dirs) this.dirs.add(d);
  }

  readMountInfo = (): Promise<string> => Promise.resolve(this.#mountInfo);
  readSelfCgroup = (): Promise<string> => Promise.resolve(this.#self);
  dirDevice(dir: string): Promise<number | undefined> {
    return Promise.resolve(this.dirs.has(dir) ? (this.otherDevice.has(dir) ? 2 : 1) : undefined);
  }
  mkdir(dir: string): Promise<boolean> {
    if (!this.dirs.has(path.dirname(dir))) return Promise.reject(errno("ENOENT"));
    if (this.dirs.has(dir)) return Promise.resolve(false);
    this.dirs.add(dir);
    this.log.push(`mkdir ${dir}`);
    return Promise.resolve(true);
  }
  rmdir(dir: string): Promise<void> {
    const left = this.busy.get(dir) ?? 0;
    if (left > 0) {
      this.busy.set(dir, left - 1);
      return Promise.reject(errno("EBUSY"));
    }
    if (!this.dirs.has(dir)) return Promise.reject(errno("ENOENT"));
    if ([...this.dirs].some((d) => path.dirname(d) === dir)) return Promise.reject(errno("EBUSY"));
    this.dirs.delete(dir);
    this.log.push(`rmdir ${dir}`);
    return Promise.resolve();
  }
  read(file: string): Promise<string> {
    const v = this.files.get(file);
    return v === undefined ? Promise.reject(errno("ENOENT")) : Promise.resolve(v);
  }
  write(file: string, value: string): Promise<void> {
    const fail = this.failWrite.get(file);
    if (fail !== undefined) return Promise.reject(errno(fail));
    if (!this.dirs.has(path.dirname(file))) return Promise.reject(errno("ENOENT"));
    this.log.push(`write ${file} ${value}`);
    if (path.basename(file) === "cgroup.procs") {
      // A process is in one cgroup per hierarchy: leaving the others of the same mount.
      const mount = file.split("/").slice(0, 3).join("/");
      for (const [f, v] of this.files) {
        if (f.startsWith(mount + "/") && f.endsWith("cgroup.procs") && v === value) this.files.delete(f);
      }
    }
    this.files.set(file, value);
    return Promise.resolve();
  }
  isCgroupFs(dir: string): Promise<boolean> {
    return Promise.resolve(!this.notCgroup.has(dir));
  }
}

/** A v1 host with cpu,cpuacct, cpuset and memory; we sit in /home of memory; /kubepods exists there. */
export function v1Fs(): FakeCgroupFs {
  const fs = new FakeCgroupFs(v1MountInfo, v1Self, [
    "/cg/cpu",
    "/cg/cpuset",
    "/cg/memory",
    "/cg/memory/home",
    "/cg/memory/kubepods",
  ]);
  fs.files.set("/cg/cpuset/cpuset.cpus", "0-3\n");
  fs.files.set("/cg/cpuset/cpuset.mems", "0\n");
  return fs;
}
