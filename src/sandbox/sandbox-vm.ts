// Pieces of a sandbox's start kept apart from its lifecycle (sandbox.ts): the VmSpec it asks the
// hypervisor for, and telling the guest its network.

import { wrap } from "../base/errors.js";
import type { AgentApi } from "../agent-client/agent-client.js";
import type { VmSpec } from "../hypervisor/hypervisor.js";
import type { PodNetwork } from "./pod-network.js";
import type { SandboxVmConfig } from "./sandbox.js";

/** Every VmSpec field, once: copying by hand forgot new ones (a VM booted without a configured device). */
const vmSpecKeys = [
  "machineType",
  "vcpus",
  "memoryMiB",
  "hotplug",
  "kernelPath",
  "initrdPath",
  "readonlyDisks",
  "kernelParams",
  "binaryPath",
  "tcgTbSizeMiB",
  "reclaimGuestFreedMemory",
] as const satisfies readonly (keyof VmSpec)[];

type MustBeNever<T extends never> = T;
/** Fails to compile, naming the field, when VmSpec has a field vmSpecKeys misses. */
export type UnlistedVmSpecFields = MustBeNever<Exclude<keyof VmSpec, (typeof vmSpecKeys)[number]>>;

/** The VmSpec part of the sandbox's resolved configuration (absent optional fields stay absent). */
export function vmSpecOf(vm: SandboxVmConfig): VmSpec {
  const out: Partial<Record<keyof VmSpec, unknown>> = {};
  for (const k of vmSpecKeys) if (vm[k] !== undefined) out[k] = vm[k];
  // CAST: every key of VmSpec was copied from a value of VmSpec's type (checked above); required ones are never undefined.
  return out as VmSpec;
}

/** Tells the guest its interfaces (found by MAC), then its routes and static neighbours. */
export async function configureGuestNetwork(
  agent: AgentApi,
  network: PodNetwork,
  opts: { signal: AbortSignal; timeoutMs: number },
): Promise<void> {
  for (const iface of network.interfaces) {
    await agent.updateInterface({ interface: iface }, opts).catch((e: unknown) => {
      throw wrap(e, `configure interface ${iface.name ?? "?"} (${iface.hwAddr ?? "?"}) in the guest`);
    });
  }
  if (network.routes.length > 0) {
    await agent.updateRoutes({ routes: { Routes: [...network.routes] } }, opts).catch((e: unknown) => {
      throw wrap(e, "configure routes in the guest");
    });
  }
  if (network.neighbors.length > 0) {
    await agent.addARPNeighbors({ neighbors: { ARPNeighbors: [...network.neighbors] } }, opts).catch((e: unknown) => {
      throw wrap(e, "add ARP neighbours in the guest");
    });
  }
}
