// How big a sandbox's VM is, as Kata sizes it (pkg/oci CalculateSandboxSizing / CalculateContainerSizing
// with static_sandbox_resource_mgmt): the configured default_vcpus and default_memory are the guest's own
// overhead, and the workload's CPUs and memory are added on top, at boot.
//   - a CRI pod's sandbox: the workload is what the kubelet summed over the pod's containers and containerd
//     wrote on the sandbox container (io.kubernetes.cri.sandbox-cpu-quota, -cpu-period, -memory);
//   - a single-container sandbox (no CRI annotation, `kata-ts run`, podman): its own linux.resources.
// The sums are capped by default_maxvcpus and default_maxmemory (0: the host's CPUs and memory), with a
// warning each. Pure: the caller gives the host's numbers and logs the warnings.

import type { MachineType } from "../config/types.js";
import { annotationSchemes } from "../oci/annotations.js";
import type { Spec } from "../oci/spec.js";

/** containerd CRI's sandbox sizing annotations (kubelet >= 1.23 fills PodSandboxConfig resources). */
export const sandboxSizingKeys = {
  cpuQuota: "io.kubernetes.cri.sandbox-cpu-quota",
  cpuPeriod: "io.kubernetes.cri.sandbox-cpu-period",
  memory: "io.kubernetes.cri.sandbox-memory",
} as const;

/** The kernel's default CFS period (µs): what a quota without a period runs with. */
export const defaultCpuPeriodUs = 100_000;

/** QEMU's ACPI memory hotplug has at most 256 DIMM slots (ACPI_MAX_RAM_SLOTS). */
export const maxMemorySlots = 256;

/** Beyond any cap we could apply: keeps the arithmetic in safe integers whatever the input says. */
const hugeCount = 1 << 30;

const mib = 1n << 20n;

/** What the workload adds to the VM. */
export interface Workload {
  /** Whole vCPUs: ceil(quota / period); 0 when there is no quota. */
  readonly vcpus: number;
  /** MiB, rounded up: the limit must fit; 0 when there is no limit. */
  readonly memoryMiB: number;
  /** Where the numbers came from, for the log. */
  readonly source: "sandbox annotations" | "container resources" | "none";
  /** Values that could not be used (ignored, as Kata does, with a warning). */
  readonly warnings: readonly string[];
}

/** Integers as text: at most 20 digits (int64), so huge values are seen as huge, never as NaN. */
function parseInteger(value: string): bigint | undefined {
  return /^-?\d{1,20}$/.test(value) ? BigInt(value) : undefined;
}

function toCount(n: bigint): number {
  return n > BigInt(hugeCount) ? hugeCount : Number(n);
}

/** ceil(quota / period) vCPUs; none when either is absent, the quota is not positive or the period is 0. */
export function vcpusOf(quota: bigint | undefined, period: bigint | undefined): number {
  if (quota === undefined || period === undefined || quota <= 0n || period <= 0n) return 0;
  return toCount((quota + period - 1n) / period);
}

/** Bytes to MiB, rounded up; none for an absent, zero or negative (unlimited) limit. */
export function memoryMiBOf(bytes: bigint | undefined): number {
  if (bytes === undefined || bytes <= 0n) return 0;
  return toCount((bytes + mib - 1n) / mib);
}

function isCriSandbox(spec: Spec): boolean {
  const a = spec.annotations ?? {};
  return annotationSchemes.some((s) => a[s.typeKey] !== undefined && s.values[a[s.typeKey] ?? ""] === "sandbox");
}

/**
 * The workload of a sandbox container's spec: the CRI sizing annotations of a pod's sandbox (a pod
 * without them, CRI-O's or an older kubelet's, adds nothing), or the resources of a single container.
 */
export function workloadOf(spec: Spec): Workload {
  const warnings: string[] = [];
  if (isCriSandbox(spec)) {
    const a = spec.annotations ?? {};
    const read = (key: string): bigint | undefined => {
      const v = a[key];
      if (v === undefined || v === "") return undefined;
      const n = parseInteger(v);
      if (n === undefined) {
        warnings.push(`annotation ${key}: ${JSON.stringify(v.slice(0, 40))} is not an integer: ignored for VM sizing`);
      }
      return n;
    };
    const quota = read(sandboxSizingKeys.cpuQuota);
    const period = read(sandboxSizingKeys.cpuPeriod);
    const memory = read(sandboxSizingKeys.memory);
    const found = quota !== undefined || period !== undefined || memory !== undefined;
    return {
      vcpus: vcpusOf(quota, period),
      memoryMiB: memoryMiBOf(memory),
      source: found ? "sandbox annotations" : "none",
      warnings,
    };
  }
  const r = spec.linux?.resources;
  const big = (n: number | undefined): bigint | undefined =>
    n === undefined || !Number.isInteger(n) ? undefined : BigInt(n);
  const quota = big(r?.cpu?.quota);
  // The kernel's default period applies to a quota given alone (Kata needs both; crun does not).
  const period = big(r?.cpu?.period) ?? (quota === undefined ? undefined : BigInt(defaultCpuPeriodUs));
  const memory = big(r?.memory?.limit);
  const found = quota !== undefined || memory !== undefined;
  return {
    vcpus: vcpusOf(quota, period),
    memoryMiB: memoryMiBOf(memory),
    source: found ? "container resources" : "none",
    warnings,
  };
}

/** The configuration's numbers and the host's that sizing depends on. */
export interface SizingLimits {
  readonly machineType: MachineType;
  readonly defaultVcpus: number;
  /** 0: the host's CPUs. */
  readonly defaultMaxVcpus: number;
  readonly defaultMemoryMiB: number;
  /** 0: the host's memory. */
  readonly defaultMaxMemoryMiB: number;
  readonly memorySlots: number;
  readonly hostCpus: number;
  /** undefined when unknown (no MemTotal): then only an explicit default_maxmemory caps. */
  readonly hostMemoryMiB: number | undefined;
}

export interface VmSizing {
  readonly vcpus: number;
  readonly memoryMiB: number;
  /**
   * Room for hotplug (q35 only: microvm has no CPU or memory hotplug), undefined when there is none:
   * QEMU starts with `-smp vcpus,maxcpus=` and `-m memoryMiB,slots=,maxmem=`.
   */
  readonly hotplug?: { readonly maxVcpus: number; readonly maxMemoryMiB: number; readonly memorySlots: number };
  readonly warnings: readonly string[];
}

/** The caps: the configured maxima, 0 meaning the host's; never below the configured defaults. */
export function sizingCaps(l: SizingLimits): { maxVcpus: number; maxMemoryMiB: number | undefined } {
  const maxVcpus = Math.max(l.defaultVcpus, l.defaultMaxVcpus === 0 ? l.hostCpus : l.defaultMaxVcpus);
  const maxMem = l.defaultMaxMemoryMiB === 0 ? l.hostMemoryMiB : l.defaultMaxMemoryMiB;
  return { maxVcpus, maxMemoryMiB: maxMem === undefined ? undefined : Math.max(l.defaultMemoryMiB, maxMem) };
}

/** default + workload, capped; with room to hotplug up to the caps on q35. */
export function planVmSizing(l: SizingLimits, w: Workload): VmSizing {
  const warnings = [...w.warnings];
  const caps = sizingCaps(l);
  const wantVcpus = l.defaultVcpus + w.vcpus;
  const vcpus = Math.min(wantVcpus, caps.maxVcpus);
  if (vcpus < wantVcpus) {
    warnings.push(
      `the VM needs ${wantVcpus} vCPUs (default_vcpus ${l.defaultVcpus} + ${w.vcpus} of the ${w.source}) but is capped at ${caps.maxVcpus} (default_maxvcpus${l.defaultMaxVcpus === 0 ? " 0: the host's CPUs" : ""})`,
    );
  }
  const wantMemory = l.defaultMemoryMiB + w.memoryMiB;
  const memoryMiB = caps.maxMemoryMiB === undefined ? wantMemory : Math.min(wantMemory, caps.maxMemoryMiB);
  if (memoryMiB < wantMemory) {
    warnings.push(
      `the VM needs ${wantMemory} MiB (default_memory ${l.defaultMemoryMiB} + ${w.memoryMiB} of the ${w.source}) but is capped at ${memoryMiB} MiB (default_maxmemory${l.defaultMaxMemoryMiB === 0 ? " 0: the host's memory" : ""})`,
    );
  }
  if (l.machineType !== "q35") return { vcpus, memoryMiB, warnings };
  const maxMemoryMiB = caps.maxMemoryMiB ?? memoryMiB;
  const memorySlots = Math.min(l.memorySlots, maxMemorySlots);
  const roomForMemory = memorySlots > 0 && maxMemoryMiB > memoryMiB;
  if (caps.maxVcpus === vcpus && !roomForMemory) return { vcpus, memoryMiB, warnings };
  return {
    vcpus,
    memoryMiB,
    hotplug: {
      maxVcpus: caps.maxVcpus,
      maxMemoryMiB: roomForMemory ? maxMemoryMiB : memoryMiB,
      memorySlots: roomForMemory ? memorySlots : 0,
    },
    warnings,
  };
}
