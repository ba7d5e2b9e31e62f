// Growing a running pod's VM when a container joins it or `update` raises a container's limits, as
// Kata's updateResources: the pod needs default_vcpus + ceil(Σ quota/period) vCPUs and default_memory +
// Σ memory limits, summed over its containers that have not stopped. What it has beyond that stays (the
// VM never shrinks: see docs/configuration.md). On q35 the difference is hot-added, capped by the room
// QEMU started with (default_maxvcpus, default_maxmemory, memory_slots), with a warning when capped; on
// microvm nothing can be added and the containers' limits apply inside the guest only. Pure: the applier
// (vm-resize-apply.ts) does the QMP and agent calls.

import type { MachineType } from "../config/types.js";
import type { VmHotplugRoom } from "../hypervisor/hypervisor.js";
import type { LinuxResources } from "../oci/spec.js";
import { defaultCpuPeriodUs } from "./vm-sizing.js";

/** One container's share of the pod: CPU in thousandths of a vCPU, memory in bytes. */
export interface ContainerShare {
  readonly milliCpus: bigint;
  readonly memoryBytes: bigint;
}

/** A container's own linux.resources as a share (a CRI sandbox's pause container: usually none). */
export function shareOf(r: LinuxResources | undefined): ContainerShare {
  const int = (n: number | undefined): bigint | undefined =>
    n === undefined || !Number.isSafeInteger(n) ? undefined : BigInt(n);
  const quota = int(r?.cpu?.quota);
  const period = int(r?.cpu?.period) ?? BigInt(defaultCpuPeriodUs);
  const limit = int(r?.memory?.limit);
  const milliCpus = quota !== undefined && quota > 0n && period > 0n ? (quota * 1000n + period - 1n) / period : 0n;
  return { milliCpus, memoryBytes: limit !== undefined && limit > 0n ? limit : 0n };
}

/**
 * `base` with the CPU and memory fields of `update` replacing its own (runc update and CRI's
 * UpdateContainerResources give only what changes); other fields do not matter for sizing.
 */
export function updatedResources(base: LinuxResources | undefined, update: LinuxResources): LinuxResources {
  return {
    cpu: { ...base?.cpu, ...update.cpu },
    memory: { ...base?.memory, ...update.memory },
  };
}

export interface ResizeInput {
  readonly machineType: MachineType;
  /** default_vcpus and default_memory: the guest's own overhead. */
  readonly base: { readonly vcpus: number; readonly memoryMiB: number };
  /** What the VM has now. */
  readonly current: { readonly vcpus: number; readonly memoryMiB: number };
  /** The room QEMU started with (q35 only); undefined: none. */
  readonly room: VmHotplugRoom | undefined;
  /** Memory DIMMs already hot-added: each takes one of room.memorySlots. */
  readonly dimmsUsed: number;
  /** Memory is hot-added in multiples of this (the guest's memory block size). */
  readonly alignMiB: number;
  /** The shares of the pod's containers that have not stopped, the joining one included. */
  readonly shares: readonly ContainerShare[];
}

export interface ResizePlan {
  /** default + the containers' sum, before any cap. */
  readonly need: { readonly vcpus: number; readonly memoryMiB: number };
  readonly addVcpus: number;
  /** One DIMM of this size; 0: none. */
  readonly addMemoryMiB: number;
  /** Why less than needed is added; told once per kind by the caller. */
  readonly warnings: readonly { readonly kind: "microvm" | "cpu-cap" | "memory-cap"; readonly msg: string }[];
}

const mib = 1n << 20n;
/** Keeps sums of hostile limits in safe integers; far beyond any cap. */
const huge = 1 << 30;

function capped(n: bigint): number {
  return n > BigInt(huge) ? huge : Number(n);
}

export function planResize(i: ResizeInput): ResizePlan {
  let milli = 0n;
  let bytes = 0n;
  for (const s of i.shares) {
    milli += s.milliCpus;
    bytes += s.memoryBytes;
  }
  const need = {
    vcpus: i.base.vcpus + capped((milli + 999n) / 1000n),
    memoryMiB: i.base.memoryMiB + capped((bytes + mib - 1n) / mib),
  };
  const warnings: { kind: "microvm" | "cpu-cap" | "memory-cap"; msg: string }[] = [];
  const short = need.vcpus > i.current.vcpus || need.memoryMiB > i.current.memoryMiB;
  const asks = `its containers need ${need.vcpus} vCPUs and ${need.memoryMiB} MiB (default_vcpus and default_memory included)`;
  const has = `${i.current.vcpus} vCPUs and ${i.current.memoryMiB} MiB`;
  if (i.machineType !== "q35") {
    if (short) {
      warnings.push({
        kind: "microvm",
        msg: `the pod's VM has ${has}; ${asks}: ${i.machineType} has no CPU or memory hotplug, so the containers' limits apply inside the VM it has (use machine_type = "q35" to grow it)`,
      });
    }
    return { need, addVcpus: 0, addMemoryMiB: 0, warnings };
  }
  const maxVcpus = i.room?.maxVcpus ?? i.current.vcpus;
  let addVcpus = 0;
  if (need.vcpus > i.current.vcpus) {
    addVcpus = Math.max(0, Math.min(need.vcpus, maxVcpus) - i.current.vcpus);
    if (need.vcpus > maxVcpus) {
      warnings.push({
        kind: "cpu-cap",
        msg: `the pod's VM needs ${need.vcpus} vCPUs but is capped at ${maxVcpus} (default_maxvcpus)`,
      });
    }
  }
  let addMemoryMiB = 0;
  const wantMiB = need.memoryMiB - i.current.memoryMiB;
  if (wantMiB > 0) {
    const slots = i.room?.memorySlots ?? 0;
    const maxMiB = slots === 0 ? i.current.memoryMiB : (i.room?.maxMemoryMiB ?? i.current.memoryMiB);
    const roomMiB = Math.max(0, maxMiB - i.current.memoryMiB);
    const align = i.alignMiB;
    const up = Math.ceil(wantMiB / align) * align;
    const fits = Math.floor(roomMiB / align) * align;
    addMemoryMiB = i.dimmsUsed >= slots ? 0 : Math.min(up, fits);
    if (addMemoryMiB < wantMiB) {
      warnings.push({
        kind: "memory-cap",
        msg: `the pod's VM needs ${need.memoryMiB} MiB but is capped at ${i.current.memoryMiB + addMemoryMiB} MiB (default_maxmemory ${maxMiB} MiB, memory_slots ${slots} with ${i.dimmsUsed} used, DIMMs in ${align} MiB blocks)`,
      });
    }
  }
  return { need, addVcpus, addMemoryMiB, warnings };
}
