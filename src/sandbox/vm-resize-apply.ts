// Applies planResize to a running VM: hot-adds the vCPUs one by one and the memory as one DIMM over
// QMP, then has the guest agent bring them online (OnlineCPUMem). The VM's size counts what QEMU
// plugged, even when a later step fails, so the next plan starts from the truth; a failure is an error
// naming the resource (the caller fails the container's create or update, as Kata does), and whatever
// was plugged but not onlined is onlined by the next OnlineCPUMem (it onlines every offline CPU and
// block). Nothing is ever unplugged.

import { Code, KataError, wrap } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import type { AgentApi } from "../agent-client/agent-client.js";
import type { MachineType } from "../config/types.js";
import { hotplugMemoryAlignMiB, type Vm, type VmHotplugRoom } from "../hypervisor/hypervisor.js";
import { planResize, type ContainerShare } from "./vm-resize.js";

export interface VmSize {
  readonly vcpus: number;
  readonly memoryMiB: number;
}

export interface VmResizerInit {
  readonly machineType: MachineType;
  /** default_vcpus and default_memory. */
  readonly base: VmSize;
  /** What the VM booted with. */
  readonly size: VmSize;
  readonly room: VmHotplugRoom | undefined;
  readonly vm: Pick<Vm, "hotplugVcpu" | "hotplugMemory" | "memoryTaken">;
  readonly agent: Pick<AgentApi, "onlineCPUMem">;
  readonly log: Logger;
}

export class VmResizer {
  readonly #init: VmResizerInit;
  #size: VmSize;
  #dimms = 0;
  /** Warning kinds already told: each once per pod. */
  readonly #warned = new Set<string>();

  constructor(init: VmResizerInit) {
    this.#init = init;
    this.#size = init.size;
  }

  get size(): VmSize {
    return this.#size;
  }

  /**
   * Grows the VM to what `shares` (every container not stopped) need, within its room. The caller
   * serializes calls (the pod's lock).
   */
  async grow(shares: readonly ContainerShare[], signal: AbortSignal): Promise<void> {
    const { vm, agent, log } = this.#init;
    const plan = planResize({
      machineType: this.#init.machineType,
      base: this.#init.base,
      current: this.#size,
      room: this.#init.room,
      dimmsUsed: this.#dimms,
      alignMiB: hotplugMemoryAlignMiB,
      shares,
    });
    for (const w of plan.warnings) {
      if (this.#warned.has(w.kind)) continue;
      this.#warned.add(w.kind);
      log.warn(w.msg);
    }
    if (plan.addVcpus === 0 && plan.addMemoryMiB === 0) return;
    const from = this.#size;
    const started = performance.now();
    for (let k = 1; k <= plan.addVcpus; k++) {
      const what = `hot-add vCPU ${from.vcpus + k} to the pod's VM`;
      if (vm.hotplugVcpu === undefined) throw new KataError(Code.Unimplemented, `${what}: the hypervisor cannot`);
      const added = await vm.hotplugVcpu(signal).catch((e: unknown) => {
        throw wrap(e, what);
      });
      if (!added) throw new KataError(Code.ResourceExhausted, `${what}: QEMU has no free vCPU slot`);
      this.#size = { ...this.#size, vcpus: this.#size.vcpus + 1 };
    }
    if (plan.addMemoryMiB > 0) {
      const what = `hot-add ${plan.addMemoryMiB} MiB of memory to the pod's VM`;
      if (vm.hotplugMemory === undefined || vm.memoryTaken === undefined) {
        throw new KataError(Code.Unimplemented, `${what}: the hypervisor cannot`);
      }
      const device = await vm.hotplugMemory(plan.addMemoryMiB, signal).catch((e: unknown) => {
        throw wrap(e, what);
      });
      this.#dimms++;
      this.#size = { ...this.#size, memoryMiB: this.#size.memoryMiB + plan.addMemoryMiB };
      await vm.memoryTaken(device, signal).catch((e: unknown) => {
        throw wrap(e, what);
      });
    }
    const req = { wait: true, nbCpus: plan.addVcpus > 0 ? this.#size.vcpus : 0, cpuOnly: plan.addMemoryMiB === 0 };
    await agent.onlineCPUMem(req, { signal }).catch((e: unknown) => {
      throw wrap(e, `online the hot-added ${describeAdded(plan.addVcpus, plan.addMemoryMiB)} in the guest`);
    });
    log.info("pod VM grown", { from, to: this.#size, need: plan.need, ms: Math.round(performance.now() - started) });
  }
}

function describeAdded(vcpus: number, memoryMiB: number): string {
  const parts = [vcpus > 0 ? `${vcpus} vCPUs` : "", memoryMiB > 0 ? `${memoryMiB} MiB` : ""];
  return parts.filter((p) => p !== "").join(" and ");
}
