// The sandbox's cgroup on the host (Kata's sandbox_cgroup_only): made from the plan (pod-cgroup-plan.ts),
// given the sandbox container's own resources, then joined by the service before it starts QEMU, so
// QEMU and every helper the service starts are born in it (on v1, memory is charged to the cgroup a page
// was first touched in: joining first is what makes the VM's memory count). At delete, once QEMU is
// gone, the service goes back where it came from and removes the directories it made, and only those.

import { delay } from "../base/async.js";
import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, errnoOf, firstFailure } from "../base/errors.js";
import path from "node:path";
import { detectLayout, type CgroupFs } from "../platform/cgroups.js";
import { planPodCgroup, type CgroupTarget, type PlannedHierarchy, type PodCgroupPlan } from "./pod-cgroup-plan.js";
import type { LinuxResources } from "../oci/spec.js";

/** What the state file keeps of a sandbox's cgroup (validated on load in persist.ts). */
export interface PersistedCgroup {
  readonly version: 1 | 2;
  /** The sandbox's cgroup, one directory per hierarchy: its processes are there. */
  readonly leaves: readonly string[];
  /** The directories this sandbox made, in the order made (removed in reverse, never any other). */
  readonly created: readonly string[];
  /** Where the service was before it joined, per hierarchy. */
  readonly homes: readonly string[];
}

/** How long a removal waits for exited processes to leave the cgroup (rmdir fails EBUSY until then). */
const busyRetries = 40;
const busyDelayMs = 50;

export class PodCgroup {
  readonly #fs: CgroupFs;
  readonly #plan: PodCgroupPlan;
  readonly #created: string[];
  readonly #pid: number;
  #leaving: Promise<void> | undefined;

  private constructor(fs: CgroupFs, plan: PodCgroupPlan, created: string[], pid: number) {
    this.#fs = fs;
    this.#plan = plan;
    this.#created = created;
    this.#pid = pid;
  }

  /**
   * Makes the sandbox's cgroup (missing directories, cpuset copied, v2 controllers enabled, the
   * sandbox's resources written), calls `onMade` (the state is saved), then moves `pid` into it. Every
   * step's undo goes on `undo`; a failure here undoes its own steps first.
   */
  static async create(
    fs: CgroupFs,
    req: { target: CgroupTarget; resources: LinuxResources | undefined; pid: number },
    undo: CleanupStack,
    onMade: (c: PodCgroup) => Promise<void>,
  ): Promise<PodCgroup> {
    const layout = detectLayout(await fs.readMountInfo(), await fs.readSelfCgroup());
    const plan = planPodCgroup(layout, req.target, req.resources);
    const created: string[] = [];
    const cg = new PodCgroup(fs, plan, created, req.pid);
    const own = new CleanupStack();
    try {
      for (const h of plan.hierarchies) await makeDirs(fs, h, created, own);
      for (const h of plan.hierarchies) await writeResources(fs, h);
      await onMade(cg);
      for (const h of plan.hierarchies) {
        const leaf = leafOf(h);
        own.defer(`move ${req.pid} back out of ${leaf}`, () => moveHome(fs, h.home, h.mountPoint, req.pid));
        await addTo(fs, leaf, req.pid);
      }
    } catch (e) {
      return own.unwind(e);
    }
    own.transferTo(undo);
    return cg;
  }

  persisted(): PersistedCgroup {
    return {
      version: this.#plan.version,
      leaves: this.#plan.hierarchies.map(leafOf),
      created: [...this.#created],
      homes: this.#plan.hierarchies.map((h) => h.home),
    };
  }

  /** Puts `pid` (QEMU, born here already when the service joined first) in every hierarchy's cgroup. */
  async addProcess(pid: number): Promise<void> {
    for (const h of this.#plan.hierarchies) await addTo(this.#fs, leafOf(h), pid);
  }

  /** The service goes home, then the directories it made go, deepest first. Idempotent. */
  leave(): Promise<void> {
    this.#leaving ??= this.#leaveOnce();
    return this.#leaving;
  }

  async #leaveOnce(): Promise<void> {
    const failures: unknown[] = [];
    for (const h of this.#plan.hierarchies) {
      await moveHome(this.#fs, h.home, h.mountPoint, this.#pid).catch((e: unknown) => failures.push(e));
    }
    for (const dir of [...this.#created].reverse()) {
      await removeDir(this.#fs, dir).catch((e: unknown) => failures.push(e));
    }
    const e = firstFailure("leave the sandbox's cgroup", failures);
    if (e !== undefined) throw e;
  }
}

function leafOf(h: PlannedHierarchy): string {
  // CAST: the planner refuses a path with no directory below the mount point.
  return h.dirs[h.dirs.length - 1] as string;
}

async function makeDirs(fs: CgroupFs, h: PlannedHierarchy, created: string[], undo: CleanupStack): Promise<void> {
  const mountDev = await fs.dirDevice(h.mountPoint);
  if (mountDev === undefined || !(await fs.isCgroupFs(h.mountPoint))) {
    throw new KataError(Code.FailedPrecondition, `${h.mountPoint} is not a mounted cgroup filesystem`);
  }
  let parent = h.mountPoint;
  for (const dir of h.dirs) {
    if (h.enable.length > 0) await enableControllers(fs, parent, h.enable);
    let dev = await fs.dirDevice(dir);
    let made = false;
    if (dev === undefined) {
      made = await fs.mkdir(dir);
      if (made) {
        created.push(dir);
        undo.defer(`remove cgroup ${dir}`, () => removeDir(fs, dir));
      }
      dev = await fs.dirDevice(dir);
    }
    // Something mounted over part of the path is not the cgroup filesystem we checked: refuse it.
    if (dev !== mountDev)
      throw new KataError(Code.FailedPrecondition, `${dir} is not in the cgroup mount ${h.mountPoint}`);
    if (made && h.copyCpuset) {
      for (const f of ["cpuset.cpus", "cpuset.mems"]) {
        const v = (await fs.read(path.join(parent, f))).trim();
        await writeFile(fs, path.join(dir, f), v, `copy ${f} of ${parent}`);
      }
    }
    parent = dir;
  }
}

/** v2: a child gets a controller only when every ancestor's subtree_control lists it. */
async function enableControllers(fs: CgroupFs, dir: string, wanted: readonly string[]): Promise<void> {
  const available = (await fs.read(path.join(dir, "cgroup.controllers"))).trim().split(/\s+/);
  const enabled = (await fs.read(path.join(dir, "cgroup.subtree_control"))).trim().split(/\s+/);
  const missing = wanted.filter((c) => available.includes(c) && !enabled.includes(c));
  if (missing.length === 0) return;
  // Not undone: other cgroups may come to rely on it, and an enabled controller costs nothing unused.
  await writeFile(
    fs,
    path.join(dir, "cgroup.subtree_control"),
    missing.map((c) => `+${c}`).join(" "),
    `enable ${missing.join(", ")} for the children of ${dir}`,
  );
}

async function writeResources(fs: CgroupFs, h: PlannedHierarchy): Promise<void> {
  const leaf = leafOf(h);
  for (const w of h.writes) await writeFile(fs, path.join(leaf, w.file), w.value, `${w.field}: set ${w.file}`);
}

async function writeFile(fs: CgroupFs, file: string, value: string, what: string): Promise<void> {
  try {
    await fs.write(file, value);
  } catch (e) {
    const code = errnoOf(e) === "EINVAL" || errnoOf(e) === "ERANGE" ? Code.InvalidArgument : Code.Internal;
    throw new KataError(code, `${what} (${JSON.stringify(value)} to ${file})`, { cause: e });
  }
}

function addTo(fs: CgroupFs, dir: string, pid: number): Promise<void> {
  return writeFile(fs, path.join(dir, "cgroup.procs"), String(pid), `move process ${pid} into ${dir}`);
}

/** Back to `home`; when that is gone, to its nearest ancestor that is not. */
async function moveHome(fs: CgroupFs, home: string, mountPoint: string, pid: number): Promise<void> {
  for (let dir = home; ; dir = path.dirname(dir)) {
    try {
      await fs.write(path.join(dir, "cgroup.procs"), String(pid));
      return;
    } catch (e) {
      if (errnoOf(e) !== "ENOENT" || dir === mountPoint || dir === "/") {
        throw new KataError(Code.Internal, `move process ${pid} back to ${dir}`, { cause: e });
      }
    }
  }
}

/** rmdir, waiting a little for exited processes to leave; a directory already gone is fine. */
async function removeDir(fs: CgroupFs, dir: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await fs.rmdir(dir);
      return;
    } catch (e) {
      const errno = errnoOf(e);
      if (errno === "ENOENT") return;
      if (errno !== "EBUSY" || attempt >= busyRetries) {
        throw new KataError(Code.Internal, `remove cgroup ${dir}`, { cause: e });
      }
      await delay(busyDelayMs);
    }
  }
}

/**
 * After a service that died: removes the directories its state says it made, deepest first, each only
 * if it is a directory on a cgroup filesystem (the state file is ours, but a path in it is checked
 * before anything is removed).
 */
export async function removeStaleCgroup(fs: CgroupFs, saved: PersistedCgroup): Promise<void> {
  const failures: unknown[] = [];
  for (const dir of [...saved.created].reverse()) {
    try {
      if ((await fs.dirDevice(dir)) === undefined) continue;
      if (!(await fs.isCgroupFs(dir))) throw new KataError(Code.FailedPrecondition, `${dir} is not a cgroup`);
      await removeDir(fs, dir);
    } catch (e) {
      failures.push(e);
    }
  }
  const e = firstFailure("remove the sandbox's cgroup", failures);
  if (e !== undefined) throw e;
}
