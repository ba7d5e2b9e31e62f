// Where a sandbox's host processes (its service and QEMU) go in the host's cgroups, and what is written
// there: Kata's sandbox_cgroup_only, planned without touching anything. The sandbox container's
// `linux.cgroupsPath` is read as runc reads it:
//   "/a/b"          cgroupfs, from the root of each hierarchy;
//   "a/b"           cgroupfs, below this process's own cgroup in each hierarchy (runc's fs driver);
//   "slice:prefix:name" runc's systemd form, named as runc's systemd driver names it
//                   (kubepods-besteffort-pod1.slice:cri-containerd:abc →
//                   /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope)
//                   and managed through cgroupfs (there is no systemd to ask);
//   absent or ""    /kata_<sandbox id> (/kata_<root scope>_<id> under a non-default --root): Kata's sandbox_cgroup_only always puts the VMM in a cgroup of the
//                   sandbox's own, so its cost is accounted; one per sandbox so that no two share a
//                   directory one of them would remove.
// The path comes from an untrusted config.json: "." and ".." components, NUL, and over-long names are
// refused, naming the field.

import path from "node:path";
import { Code, KataError } from "../base/errors.js";
import type { LinuxResources } from "../oci/spec.js";
import { dirOfCgroup, type CgroupLayout, type Hierarchy } from "../platform/cgroups.js";

const field = "linux.cgroupsPath";
/** PATH_MAX and NAME_MAX. */
const maxPathBytes = 4096;
const maxNameBytes = 255;

/** The cgroup named by `linux.cgroupsPath`: absolute from each hierarchy's root, or relative to our own. */
export interface CgroupTarget {
  readonly form: "cgroupfs" | "systemd" | "default";
  /** Clean, with no "." or ".." component; starts with "/" unless relative. */
  readonly path: string;
  readonly relative: boolean;
}

export function parseCgroupsPath(raw: string | undefined, sandboxId: string, scope = ""): CgroupTarget {
  if (raw === undefined || raw === "") {
    // Cgroups are host-wide while ids are unique per --root: a non-default root's scope goes in the name.
    return { form: "default", path: `/kata_${scope === "" ? "" : `${scope}_`}${sandboxId}`, relative: false };
  }
  if (raw.includes("\0")) throw bad("must not contain NUL");
  if (Buffer.byteLength(raw) > maxPathBytes) throw bad(`is longer than ${maxPathBytes} bytes`);
  const parts = raw.split(":");
  if (!raw.startsWith("/") && parts.length === 3 && isSliceName(parts[0] ?? "")) {
    const [slice = "", prefix = "", name = ""] = parts;
    return { form: "systemd", path: checkComponents(systemdPath(slice, prefix, name)), relative: false };
  }
  const relative = !raw.startsWith("/");
  const clean = checkComponents(
    (relative ? "" : "/") +
      raw
        .split("/")
        .filter((c) => c !== "")
        .join("/"),
  );
  if (clean === "/" || clean === "") throw bad(`${JSON.stringify(raw)} names no cgroup of its own`);
  return { form: "cgroupfs", path: clean, relative };
}

/** Kata's IsSystemdCgroup: "slice:prefix:name", the slice empty (runc's system.slice), "-" or a .slice. */
function isSliceName(s: string): boolean {
  return s === "" || s === "-" || s.endsWith(".slice");
}

/** runc's systemd naming: ExpandSlice(slice) + "/" + the unit (<prefix>-<name>.scope, or a .slice name as is). */
function systemdPath(slice: string, prefix: string, name: string): string {
  if (name === "") throw bad("systemd form slice:prefix:name has an empty name");
  for (const [what, v] of [
    ["slice", slice],
    ["prefix", prefix],
    ["name", name],
  ] as const) {
    if (v.includes("/")) throw bad(`systemd ${what} ${JSON.stringify(v)} must not contain "/"`);
  }
  const unit = name.endsWith(".slice") ? name : `${prefix}-${name}.scope`;
  return path.posix.join(expandSlice(slice === "" ? "system.slice" : slice), unit);
}

function expandSlice(slice: string): string {
  const suffix = ".slice";
  if (slice.length <= suffix.length || !slice.endsWith(suffix)) throw bad(`${JSON.stringify(slice)} is not a slice`);
  const base = slice.slice(0, -suffix.length);
  if (base === "-") return "/";
  let out = "";
  let prefix = "";
  for (const c of base.split("-")) {
    if (c === "") throw bad(`slice ${JSON.stringify(slice)} has an empty component`);
    out += `/${prefix}${c}${suffix}`;
    prefix += `${c}-`;
  }
  return out;
}

function checkComponents(p: string): string {
  for (const c of p.split("/")) {
    if (c === "." || c === "..") throw bad(`must not contain a "${c}" component`);
    if (Buffer.byteLength(c) > maxNameBytes) throw bad(`has a component longer than ${maxNameBytes} bytes`);
  }
  return p;
}

function bad(problem: string): KataError {
  return new KataError(Code.InvalidArgument, `${field}: ${problem}`);
}

/** A value written to one of the cgroup's files; `field` is the config.json field it comes from. */
export interface CgroupWrite {
  readonly file: string;
  readonly value: string;
  readonly field: string;
}

/** The sandbox's cgroup in one hierarchy. */
export interface PlannedHierarchy {
  readonly controllers: readonly string[];
  readonly mountPoint: string;
  /** Every directory from just below the mount point down to the leaf; made when missing, top down. */
  readonly dirs: readonly string[];
  /** Where this process is now: it goes back there before the cgroup is removed. */
  readonly home: string;
  /** v1 cpuset: a new cgroup has no CPUs or memory nodes and refuses tasks until given its parent's. */
  readonly copyCpuset: boolean;
  /** v2: controllers to enable in each ancestor's cgroup.subtree_control (those the host has). */
  readonly enable: readonly string[];
  readonly writes: readonly CgroupWrite[];
}

export interface PodCgroupPlan {
  readonly version: 1 | 2;
  readonly target: CgroupTarget;
  readonly hierarchies: readonly PlannedHierarchy[];
}

/** The plan for `target` on this host's `layout`, with the sandbox container's own resources. */
export function planPodCgroup(
  layout: CgroupLayout,
  target: CgroupTarget,
  resources: LinuxResources | undefined,
): PodCgroupPlan {
  const writes = layout.version === 1 ? v1Writes(resources) : v2Writes(resources);
  const hierarchies = layout.hierarchies.map((h): PlannedHierarchy => {
    const cg = target.relative ? path.posix.join(h.ownPath, target.path) : target.path;
    const leaf = dirIn(h, cg);
    const home = dirIn(h, h.ownPath);
    const rel = path.posix.relative(h.mountPoint, leaf);
    if (rel === "" || rel.startsWith("..")) throw bad(`${JSON.stringify(cg)} is not below ${h.mountPoint}`);
    const parts = rel.split("/");
    const dirs = parts.map((_c, i) => path.posix.join(h.mountPoint, ...parts.slice(0, i + 1)));
    return {
      controllers: h.controllers,
      mountPoint: h.mountPoint,
      dirs,
      home,
      copyCpuset: h.controllers.includes("cpuset"),
      enable: layout.version === 2 ? ["cpu", "cpuset", "memory", "pids"] : [],
      writes: writes.filter((w) => layout.version === 2 || h.controllers.includes(w.file.split(".")[0] ?? "")),
    };
  });
  return { version: layout.version, target, hierarchies };
}

function dirIn(h: Hierarchy, cgPath: string): string {
  const dir = dirOfCgroup(h, cgPath);
  if (dir === undefined)
    throw bad(`${JSON.stringify(cgPath)} is outside the part of the hierarchy mounted at ${h.mountPoint}`);
  return dir;
}

/** Checks the sandbox's resources before anything is made (the same checks planPodCgroup makes). */
export function checkCgroupResources(resources: LinuxResources | undefined): void {
  v1Writes(resources);
  v2Writes(resources);
}

/** runc's fs (v1) values. Zero means unset throughout, as in runc. */
function v1Writes(r: LinuxResources | undefined): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  const limit = memoryLimit(r);
  if (limit !== undefined) out.push(w("memory.limit_in_bytes", limit === -1 ? "-1" : String(limit), "memory.limit"));
  const cpu = cpuValues(r);
  if (cpu.shares !== undefined) out.push(w("cpu.shares", String(cpu.shares), "cpu.shares"));
  // The period first: a quota is checked against the period in place.
  if (cpu.period !== undefined) out.push(w("cpu.cfs_period_us", String(cpu.period), "cpu.period"));
  if (cpu.quota !== undefined) out.push(w("cpu.cfs_quota_us", String(cpu.quota), "cpu.quota"));
  out.push(...cpusetWrites(r));
  const pids = pidsMax(r);
  if (pids !== undefined) out.push(w("pids.max", pids, "pids.limit"));
  return out;
}

/** runc's fs2 values: cpu.weight from shares by runc's formula, cpu.max "<quota|max> <period>". */
function v2Writes(r: LinuxResources | undefined): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  const limit = memoryLimit(r);
  if (limit !== undefined) out.push(w("memory.max", limit === -1 ? "max" : String(limit), "memory.limit"));
  const cpu = cpuValues(r);
  if (cpu.shares !== undefined) {
    const s = Math.min(Math.max(cpu.shares, 2), 262144);
    out.push(w("cpu.weight", String(1 + Math.floor(((s - 2) * 9999) / 262142)), "cpu.shares"));
  }
  if (cpu.quota !== undefined || cpu.period !== undefined) {
    const quota = cpu.quota !== undefined && cpu.quota > 0 ? String(cpu.quota) : "max";
    out.push(w("cpu.max", `${quota} ${cpu.period ?? 100000}`, "cpu.quota"));
  }
  out.push(...cpusetWrites(r));
  const pids = pidsMax(r);
  if (pids !== undefined) out.push(w("pids.max", pids, "pids.limit"));
  return out;
}

function w(file: string, value: string, f: string): CgroupWrite {
  return { file, value, field: `linux.resources.${f}` };
}

function memoryLimit(r: LinuxResources | undefined): number | undefined {
  const v = r?.memory?.limit;
  if (v === undefined || v === 0) return undefined;
  if (v === -1) return -1;
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new KataError(Code.InvalidArgument, `linux.resources.memory.limit: must be bytes or -1, not ${v}`);
  }
  return v;
}

function cpuValues(r: LinuxResources | undefined): { shares?: number; quota?: number; period?: number } {
  const c = r?.cpu;
  const out: { shares?: number; quota?: number; period?: number } = {};
  const check = (name: string, v: number | undefined, min: number): number | undefined => {
    if (v === undefined || v === 0) return undefined;
    if (!Number.isSafeInteger(v) || (v < min && v !== -1)) {
      throw new KataError(Code.InvalidArgument, `linux.resources.cpu.${name}: out of range (${v})`);
    }
    return v;
  };
  const shares = check("shares", c?.shares, 1);
  const quota = check("quota", c?.quota, 1000);
  const period = check("period", c?.period, 1000);
  if (shares !== undefined && shares > 0) out.shares = shares;
  if (quota !== undefined) out.quota = quota;
  if (period !== undefined && period > 0) out.period = period;
  return out;
}

function cpusetWrites(r: LinuxResources | undefined): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  for (const key of ["cpus", "mems"] as const) {
    const v = r?.cpu?.[key];
    if (v === undefined || v === "") continue;
    if (!/^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$/.test(v)) {
      throw new KataError(
        Code.InvalidArgument,
        `linux.resources.cpu.${key}: not a list of ranges: ${JSON.stringify(v)}`,
      );
    }
    out.push(w(`cpuset.${key}`, v, `cpu.${key}`));
  }
  return out;
}

function pidsMax(r: LinuxResources | undefined): string | undefined {
  const v = r?.pids?.limit;
  if (v === undefined || v === 0) return undefined;
  if (!Number.isSafeInteger(v)) throw new KataError(Code.InvalidArgument, `linux.resources.pids.limit: ${v}`);
  return v < 0 ? "max" : String(v);
}
