// The VM template's files and record, and the rules that decide whether a sandbox may start from it.
// Pure: the record is data read elsewhere; nothing here touches the host.
//
// A template is a paused VM saved in two parts on a tmpfs made by `kata-ts factory init`: its RAM
// (`memory`, the guest's memory-backend file) and its device state (`state`, QMP migrate with
// x-ignore-shared). A clone maps `memory` copy-on-write and loads `state`, so it must be the same VM in
// every guest-visible way: same QEMU, kernel, initrd, disks, machine, vCPUs, RAM size and devices.

import { Buffer } from "node:buffer";
import path from "node:path";
import { Code, KataError } from "../base/errors.js";
import type { MountEntry } from "../platform/mountinfo.js";
import type { VmNic, VmSpec } from "../hypervisor/hypervisor.js";

/** The tmpfs source name `kata-ts factory init` mounts with: how a template path is known to be ours. */
export const templateMountSource = "kata-ts-factory";
/** Room on the tmpfs besides guest RAM: the device state (~64 KB measured), sockets, the record. */
export const templateSlackMiB = 8;
/** The record is small; a larger file is not one we wrote. */
export const maxRecordBytes = 64 * 1024;

export interface TemplateFiles {
  readonly dir: string;
  /** Guest RAM (memory-backend-file). */
  readonly memory: string;
  /** Device state, written by QMP migrate. */
  readonly state: string;
  /** The template's record (TemplateRecord as JSON), written last: a template without it is incomplete. */
  readonly record: string;
  /** The template VM's 9p export: empty, and never mounted in the guest (a mounted export blocks migration). */
  readonly share: string;
  /** The template VM's sockets and console log while `factory init` runs. */
  readonly vmDir: string;
}

export function templateFiles(dir: string): TemplateFiles {
  return {
    dir,
    memory: path.join(dir, "memory"),
    state: path.join(dir, "state"),
    record: path.join(dir, "template.json"),
    share: path.join(dir, "share"),
    vmDir: path.join(dir, "vm"),
  };
}

/** A file the VM reads, identified so a rebuilt image (same path, new contents) is noticed. */
export interface FileIdentity {
  readonly path: string;
  readonly sizeBytes: number;
  readonly mtimeMs: number;
}

/** What `factory init` booted, saved in template.json. */
export interface TemplateRecord {
  readonly version: 1;
  readonly createdAt: string;
  readonly accel: string;
  readonly binary: string;
  readonly machineType: VmSpec["machineType"];
  readonly vcpus: number;
  readonly memoryMiB: number;
  /** q35's hotplug room (VmSpec.hotplug); null: none (microvm). */
  readonly hotplug: VmSpec["hotplug"] | null;
  readonly kernelParams: readonly string[];
  readonly kernel: FileIdentity;
  readonly initrd: FileIdentity;
  readonly disks: readonly (FileIdentity & { readonly serial: string })[];
  /** The template's NICs' tap names (a clone opens the same names in its own netns). */
  readonly taps: readonly string[];
  /** Whether it has the free-page-reporting balloon (reclaim_guest_freed_memory): a device, so in its state. */
  readonly balloon?: boolean;
  readonly stateBytes: number;
  /** Warm-up run before the snapshot (docs/factory.md): what was run, or "none". */
  readonly warmup: string;
}

/** What a sandbox asks for, in the record's terms. */
export interface TemplateRequest {
  readonly accel: string;
  readonly binary: string;
  readonly spec: VmSpec;
  readonly kernel: FileIdentity;
  readonly initrd: FileIdentity;
  readonly disks: readonly (FileIdentity & { readonly serial: string })[];
  readonly nics: readonly VmNic[];
}

/** tmpfs size for a template of `memoryMiB` of guest RAM. */
export function templateTmpfsMiB(memoryMiB: number): number {
  return memoryMiB + templateSlackMiB;
}

/**
 * Why a sandbox asking for `req` cannot start from the template `rec` (empty: it can). microvm cannot
 * hot-plug CPUs or memory, and the memory file is exactly the guest's RAM, so vCPUs and memory must be
 * equal too (Kata resizes a clone on q35 after it starts; kata-ts does not yet).
 */
export function templateMismatches(rec: TemplateRecord, req: TemplateRequest): string[] {
  const out: string[] = [];
  const same = (what: string, a: unknown, b: unknown): void => {
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      out.push(`${what}: template ${JSON.stringify(a)}, sandbox ${JSON.stringify(b)}`);
    }
  };
  same("accelerator", rec.accel, req.accel);
  same("hypervisor path", rec.binary, req.binary);
  same("machine type", rec.machineType, req.spec.machineType);
  same("vcpus", rec.vcpus, req.spec.vcpus);
  same("memory MiB", rec.memoryMiB, req.spec.memoryMiB);
  same("hotplug room", rec.hotplug, req.spec.hotplug ?? null);
  same("free-page-reporting balloon", rec.balloon ?? false, req.spec.reclaimGuestFreedMemory === true);
  same("kernel parameters", rec.kernelParams, req.spec.kernelParams);
  same("kernel", rec.kernel, req.kernel);
  same("initrd", rec.initrd, req.initrd);
  same("disks", rec.disks, req.disks);
  same(
    "NIC taps",
    rec.taps,
    req.nics.map((n) => n.tapName),
  );
  return out;
}

/** template.json as read from disk: anything unexpected is a broken template, named. */
export function parseTemplateRecord(text: string): TemplateRecord {
  if (Buffer.byteLength(text) > maxRecordBytes) {
    throw new KataError(Code.FailedPrecondition, `template record is larger than ${maxRecordBytes} bytes`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new KataError(Code.FailedPrecondition, "template record is not JSON", { cause: e });
  }
  const r = v as Partial<TemplateRecord> | null;
  const ok =
    r !== null &&
    typeof r === "object" &&
    r.version === 1 &&
    typeof r.accel === "string" &&
    typeof r.binary === "string" &&
    (r.machineType === "microvm" || r.machineType === "q35") &&
    Number.isInteger(r.vcpus) &&
    Number.isInteger(r.memoryMiB) &&
    (r.hotplug === null || typeof r.hotplug === "object") &&
    (r.balloon === undefined || typeof r.balloon === "boolean") &&
    Array.isArray(r.kernelParams) &&
    isIdentity(r.kernel) &&
    isIdentity(r.initrd) &&
    Array.isArray(r.disks) &&
    r.disks.every(isIdentity) &&
    Array.isArray(r.taps) &&
    Number.isInteger(r.stateBytes) &&
    typeof r.warmup === "string";
  if (!ok) throw new KataError(Code.FailedPrecondition, "template record has missing or mistyped fields");
  // CAST: every field was checked above.
  return r as TemplateRecord;
}

function isIdentity(v: unknown): v is FileIdentity {
  const f = v as Partial<FileIdentity> | null;
  return (
    typeof f === "object" &&
    f !== null &&
    typeof f.path === "string" &&
    typeof f.sizeBytes === "number" &&
    typeof f.mtimeMs === "number"
  );
}

/**
 * Whether `dir` is the tmpfs `factory init` made: a mount point of its own, tmpfs, with our source name.
 * Undefined when it is; otherwise why not.
 */
export function notOurTmpfs(mounts: readonly MountEntry[], dir: string): string | undefined {
  // The last entry for a mount point is the one on top.
  const top = mounts.filter((m) => m.mountPoint === dir).at(-1);
  if (top === undefined) return `${dir} is not a mount point (no template was made there)`;
  if (top.fstype !== "tmpfs" || top.source !== templateMountSource) {
    return `${dir} is a ${top.fstype} mount from ${top.source}, not the tmpfs kata-ts factory init makes`;
  }
  return undefined;
}

/** The QEMU exec: migration URI runs a shell: template paths are refused unless they need no quoting. */
export function checkTemplatePath(dir: string): string {
  const normalized = path.normalize(dir) === dir && !dir.endsWith("/");
  if (!/^\/[A-Za-z0-9_./+-]*$/.test(dir) || dir.split("/").includes("..") || !normalized) {
    throw new KataError(
      Code.InvalidArgument,
      `[factory] template_path ${JSON.stringify(dir)}: must be a normalized absolute path of [A-Za-z0-9_./+-]`,
    );
  }
  if (dir === "/") throw new KataError(Code.InvalidArgument, "[factory] template_path: cannot be /");
  return dir;
}
