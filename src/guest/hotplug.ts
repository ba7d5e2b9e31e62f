// OnlineCPUMem: after the host hot-added vCPUs or memory DIMMs (q35, ACPI), the guest brings them
// online. Hot-added CPUs appear asynchronously (the ACPI handler runs after QEMU's device_add
// returned), so the CPU count is waited for, with a deadline; memory blocks are onlined once (the host
// waits for the guest's ACPI _OST of each DIMM first, so its blocks exist by then). The guest kernel
// leaves hot-added memory offline (memhp auto-online is off): it is onlined here.
//
// Cgroups: the guest uses cgroup v2 only (guest-init), where a container without cpuset.cpus follows
// its parent's effective CPUs, new ones included, and one with cpuset.cpus keeps what it asked for
// (its effective set grows as those CPUs come online). Nothing is widened, unlike Kata's cgroup v1 path.
//
// Only names matching cpuN / memoryN under the fixed sysfs directories are touched, and the count of
// entries read is bounded: the directory listing is the kernel's, but nothing is trusted blindly.

import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { abortError, delay } from "../base/async.js";
import { Code, KataError, ignoreErrno } from "../base/errors.js";
import type { Logger } from "../base/log.js";

/** Where the kernel lists CPUs and memory blocks. */
export const defaultSysDevicesSystem = "/sys/devices/system";
/** x86_64's NR_CPUS ceiling in common kernels: no guest has more possible CPUs than this. */
export const maxGuestCpus = 8192;
/** More memory blocks than 1 TiB of 128 MiB blocks: beyond any VM kata-ts makes. */
const maxMemoryBlocks = 8192;
/** How long CPUs the host added may take to show up (TCG: the ACPI handler runs slowly). */
export const defaultCpuWaitMs = 20_000;
const pollMs = 50;

export interface OnlineRequest {
  /** At least this many CPUs online on return; 0: none waited for. */
  readonly nbCpus: number;
  readonly cpuOnly: boolean;
}

export interface OnlineResult {
  readonly cpusOnline: number;
  readonly cpusOnlined: number;
  readonly memoryBlocksOnlined: number;
}

export interface HotplugOptions {
  /** /sys/devices/system, or a directory laid out like it (tests). */
  readonly root?: string;
  readonly cpuWaitMs?: number;
  readonly logger?: Logger;
}

/**
 * Parses a kernel CPU list ("0-3,5,7-8") into its count; throws INTERNAL on anything else. Bounded:
 * every number at most maxGuestCpus.
 */
export function cpuListCount(text: string): number {
  const t = text.trim();
  if (t === "") return 0;
  if (t.length > 4096) throw new KataError(Code.Internal, "cpu list longer than 4096 characters");
  let n = 0;
  for (const part of t.split(",")) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part);
    if (m === null) throw new KataError(Code.Internal, `cpu list ${JSON.stringify(t.slice(0, 80))}: bad part`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo || hi >= maxGuestCpus) {
      throw new KataError(Code.Internal, `cpu list ${JSON.stringify(t.slice(0, 80))}: bad range ${part}`);
    }
    n += hi - lo + 1;
  }
  return n;
}

/** The numbered entries `prefixN` of `dir`, in numeric order, at most `max`. */
async function numbered(dir: string, prefix: string, max: number): Promise<string[]> {
  const re = new RegExp(`^${prefix}(\\d{1,7})$`);
  const names: { name: string; n: number }[] = [];
  for (const name of await readdir(dir)) {
    const m = re.exec(name);
    if (m === null) continue;
    if (names.length >= max) throw new KataError(Code.Internal, `${dir}: more than ${max} ${prefix} entries`);
    names.push({ name, n: Number(m[1]) });
  }
  return names.sort((a, b) => a.n - b.n).map((e) => e.name);
}

/** A sysfs attribute's text, or undefined when it does not exist (cpu0 often has no `online`). */
async function readAttr(file: string): Promise<string | undefined> {
  const text = await readFile(file, "utf8").catch(ignoreErrno("ENOENT"));
  return text?.slice(0, 256).trim();
}

/** Onlines every offline CPU present; returns how many it onlined. */
async function onlineCpus(cpuDir: string): Promise<number> {
  let onlined = 0;
  for (const name of await numbered(cpuDir, "cpu", maxGuestCpus)) {
    const file = path.join(cpuDir, name, "online");
    if ((await readAttr(file)) !== "0") continue;
    await writeFile(file, "1");
    onlined++;
  }
  return onlined;
}

/** Onlines every offline memory block; throws naming the blocks the kernel refused. */
async function onlineMemory(memDir: string): Promise<number> {
  let onlined = 0;
  const refused: string[] = [];
  for (const name of await numbered(memDir, "memory", maxMemoryBlocks)) {
    const file = path.join(memDir, name, "state");
    if ((await readAttr(file)) !== "offline") continue;
    try {
      await writeFile(file, "online");
      onlined++;
    } catch (e) {
      refused.push(`${name} (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  if (refused.length > 0) {
    throw new KataError(Code.Internal, `online memory: the kernel refused ${refused.slice(0, 4).join(", ")}`);
  }
  return onlined;
}

/**
 * Brings hot-added CPUs and memory online. INVALID_ARGUMENT when nbCpus exceeds the guest's possible
 * CPUs; DEADLINE_EXCEEDED naming the counts when the CPUs do not show up in time.
 */
export async function onlineCpuMem(
  req: OnlineRequest,
  signal: AbortSignal,
  opts: HotplugOptions = {},
): Promise<OnlineResult> {
  const root = opts.root ?? defaultSysDevicesSystem;
  const cpuDir = path.join(root, "cpu");
  const possible = cpuListCount((await readAttr(path.join(cpuDir, "possible"))) ?? "");
  if (!Number.isInteger(req.nbCpus) || req.nbCpus < 0 || req.nbCpus > possible) {
    throw new KataError(
      Code.InvalidArgument,
      `nb_cpus: ${req.nbCpus} is more than the guest's ${possible} possible CPUs`,
    );
  }
  const online = async (): Promise<number> => cpuListCount((await readAttr(path.join(cpuDir, "online"))) ?? "");
  let cpusOnlined = 0;
  let cpusOnline = await online();
  const waitMs = opts.cpuWaitMs ?? defaultCpuWaitMs;
  const started = Date.now();
  while (req.nbCpus > 0) {
    cpusOnlined += await onlineCpus(cpuDir);
    cpusOnline = await online();
    if (cpusOnline >= req.nbCpus) break;
    if (Date.now() - started >= waitMs) {
      throw new KataError(
        Code.DeadlineExceeded,
        `online CPUs: ${cpusOnline} of the ${req.nbCpus} asked for are online after ${waitMs} ms`,
      );
    }
    await delay(pollMs, signal).catch((e: unknown) => {
      throw new KataError(abortError(signal, "online CPUs").code, "online CPUs: cancelled while waiting", { cause: e });
    });
  }
  const memoryBlocksOnlined = req.cpuOnly ? 0 : await onlineMemory(path.join(root, "memory"));
  opts.logger?.info("online cpu and memory", { cpusOnline, cpusOnlined, memoryBlocksOnlined });
  return { cpusOnline, cpusOnlined, memoryBlocksOnlined };
}
