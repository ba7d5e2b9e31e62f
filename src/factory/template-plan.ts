// The VM template's files and record, and the rules that decide whether a sandbox may start from it.
// Pure: the record is data read elsewhere; nothing here touches the host.
//
// A template is a paused VM saved in two parts on a tmpfs made by `kata-ts factory init`: its RAM
// (`memory`, the guest's memory-backend file) and its device state (`state`, QMP migrate with
// x-ignore-shared). A clone maps `memory` copy-on-write and loads `state`, so it must be the same VM in
// every guest-visible way: same QEMU, kernel, initrd, disks, machine, vCPUs, RAM size and devices.

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import path from "node:path";
import { Code, KataError } from "../base/errors.js";
import type { MountEntry } from "../platform/mountinfo.js";
import type { VmNic, VmSpec } from "../hypervisor/hypervisor.js";
import { tapName } from "../network/plan.js";

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

/**
 * The template's one NIC (docs/factory.md#nics). microvm cannot hot-plug a NIC into a clone, so the
 * template boots with it and every clone keeps it: the clone's QEMU opens the same tap name in the pod's
 * netns (the pod's first tap, mirrored to its veth as in a direct boot), and the guest, which still sees
 * this MAC (it is in the device's migrated state), is told to take the pod's (Interface.currentHwAddr).
 * The MAC is locally administered and never on a wire for long: QEMU's post-restore announcement only.
 */
export const templateNic: VmNic = { tapName: tapName(0), mac: "02:6b:74:00:00:01" };

/** The throwaway netns `factory init` opens the template's tap in: one per template path, never a pod's. */
export function templateNetnsName(dir: string): string {
  return `kata-ts-factory-${createHash("sha256").update(dir).digest("hex").slice(0, 12)}`;
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
  /** The template's NICs (templateNic, or none); absent in records from before NICs (then: `taps`, empty). */
  readonly nics?: readonly VmNic[];
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
  /** Whether its QEMU runs in a network namespace of the sandbox's own (where a template's tap can be). */
  readonly ownNetns: boolean;
}

/**
 * The record of a VM made for a request (a template's, or a cached VM's): what later sandboxes' requests
 * are matched against (templateMismatches).
 */
export function recordFor(
  req: Pick<TemplateRequest, "accel" | "binary" | "kernel" | "initrd" | "disks">,
  spec: VmSpec,
  made: { readonly nics: readonly VmNic[]; readonly stateBytes: number; readonly warmup: string },
): TemplateRecord {
  return {
    version: 1,
    createdAt: new Date().toISOString(),
    accel: req.accel,
    binary: req.binary,
    machineType: spec.machineType,
    vcpus: spec.vcpus,
    memoryMiB: spec.memoryMiB,
    hotplug: spec.hotplug ?? null,
    kernelParams: spec.kernelParams,
    kernel: req.kernel,
    initrd: req.initrd,
    disks: req.disks,
    taps: made.nics.map((n) => n.tapName),
    nics: made.nics,
    balloon: spec.reclaimGuestFreedMemory === true,
    stateBytes: made.stateBytes,
    warmup: made.warmup,
  };
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
  const nics = nicMismatch(rec, req);
  if (nics !== undefined) out.push(nics);
  return out;
}

/**
 * Whether the sandbox's NICs fit the template's: none for none; for the template's one NIC, one pod
 * interface on the same tap name (the CNI veth case), or none at all if the sandbox has a netns of its
 * own (the clone's QEMU then makes the tap itself there, and it goes with QEMU; the guest's NIC stays
 * down). More than one pod interface cannot be given to a clone (no hot-plug on microvm).
 */
function nicMismatch(rec: TemplateRecord, req: TemplateRequest): string | undefined {
  const t = rec.nics ?? [];
  const p = req.nics;
  if (t.length === 0) {
    return p.length === 0 ? undefined : `NICs: the template has none, the sandbox ${p.length}`;
  }
  const [nic] = t;
  if (t.length > 1 || nic === undefined) return `NICs: the template has ${t.length}, kata-ts makes one`;
  if (p.length === 0) {
    return req.ownNetns
      ? undefined
      : "NICs: the template has one, and the sandbox has no network namespace of its own for its tap";
  }
  if (p.length > 1) return `NICs: the template has one, the sandbox ${p.length} (a clone cannot get more)`;
  const tap = p[0]?.tapName;
  return tap === nic.tapName ? undefined : `NIC tap: template ${nic.tapName}, sandbox ${String(tap)}`;
}

/** A pod MAC the guest must give the NIC that has the template's MAC now. */
export interface NicMacChange {
  readonly mac: string;
  readonly currentMac: string;
}

/**
 * The NICs a clone's QEMU gets and the MAC changes its guest needs, for a sandbox whose NICs fit
 * (templateMismatches empty). The template's NICs, on the same taps; the device state the clone loads
 * holds the template's MAC (what the guest and the device's receive filter see until the guest sets the
 * pod's), but the command line's MAC is the pod's: QEMU announces that one after the restore (its RARP
 * teaches the CNI bridge the pod's port at once) and a device reset returns to it.
 */
export function cloneNics(
  rec: TemplateRecord,
  podNics: readonly VmNic[],
): { readonly nics: readonly VmNic[]; readonly macChanges: readonly NicMacChange[] } {
  const templateNics = rec.nics ?? [];
  const nics = templateNics.map((t, i) => {
    const p = podNics[i];
    return p === undefined ? t : { tapName: t.tapName, mac: p.mac.toLowerCase() };
  });
  const macChanges = podNics.flatMap((p, i) => {
    const t = templateNics[i];
    return t === undefined || t.mac === p.mac.toLowerCase() ? [] : [{ mac: p.mac.toLowerCase(), currentMac: t.mac }];
  });
  return { nics, macChanges };
}

/** `interfaces` with currentHwAddr set where the guest's NIC still has another MAC (cloneNics). */
export function withCurrentMacs<T extends { readonly hwAddr?: string }>(
  interfaces: readonly T[],
  changes: readonly NicMacChange[],
): (T & { readonly currentHwAddr?: string })[] {
  return interfaces.map((i) => {
    const c = changes.find((ch) => ch.mac === i.hwAddr?.toLowerCase());
    return c === undefined ? i : { ...i, currentHwAddr: c.currentMac };
  });
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
    (r.nics === undefined || (Array.isArray(r.nics) && r.nics.every(isNic))) &&
    Number.isInteger(r.stateBytes) &&
    typeof r.warmup === "string";
  if (!ok) throw new KataError(Code.FailedPrecondition, "template record has missing or mistyped fields");
  // CAST: every field was checked above.
  return r as TemplateRecord;
}

function isNic(v: unknown): v is VmNic {
  const n = v as Partial<VmNic> | null;
  return (
    typeof n === "object" &&
    n !== null &&
    typeof n.tapName === "string" &&
    /^[A-Za-z0-9_.-]{1,15}$/.test(n.tapName) &&
    typeof n.mac === "string" &&
    /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(n.mac)
  );
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
