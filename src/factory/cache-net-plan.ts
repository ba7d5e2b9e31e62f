// NICs in cached VMs (docs/factory.md#nics-in-cached-vms). A cached VM boots before its pod exists, so
// its QEMU cannot open a tap in the pod's netns: it boots with the template's NIC on a tap of its own
// making, in a network namespace of its own (one per cached VM). The sandbox that takes the VM over
// moves that very tap into the pod's netns, in place of the one its network setup made there, and wires
// it to the pod's veth again; the guest agent then gives the NIC the pod's MAC, as in a clone. Pure:
// names, the rule for which sandboxes a cached VM's NIC serves, and the commands.

import { createHash } from "node:crypto";
import { checkId } from "../base/ids.js";
import type { VmNic } from "../hypervisor/hypervisor.js";
import { retapOps, type NetOp } from "../network/plan.js";

/** The netns names of one cache's VMs: host-wide, so scoped by the cache's directory (one per endpoint). */
export function cacheNetnsPrefix(cacheDir: string): string {
  return `kata-ts-cache-${createHash("sha256").update(cacheDir).digest("hex").slice(0, 12)}-`;
}

export function cacheNetnsName(cacheDir: string, vmId: string): string {
  checkId("cached VM id", vmId);
  return cacheNetnsPrefix(cacheDir) + vmId;
}

/** A pod interface and the tap its network setup made for it. */
export interface PodLink {
  readonly veth: string;
  readonly tap: string;
  /** The veth's MTU: the tap gets the same. */
  readonly mtu?: number;
}

/** A command and the namespace it runs in: the cached VM's own, or the pod's. */
export interface CacheTapStep {
  readonly where: "cache" | "pod";
  readonly op: NetOp;
}

export type CacheTapPlan =
  /** Nothing to move: the VM has no NIC, or the pod no interface (the tap stays, and dies with QEMU). */
  | { readonly kind: "none" }
  | { readonly kind: "move"; readonly steps: readonly CacheTapStep[] }
  /** This VM cannot serve this sandbox: it boots directly, with `reason` in the warning. */
  | { readonly kind: "refuse"; readonly reason: string };

/**
 * What a sandbox with `links` (in the netns at `podNetnsPath`) does with the NIC of a cached VM whose
 * record says `vmNics`. A cached VM has at most one NIC and cannot get another (microvm cannot hot-plug):
 * it serves a pod with one interface on the same tap name, or with none.
 */
export function cacheTapPlan(
  vmNics: readonly VmNic[],
  links: readonly PodLink[],
  podNetnsPath: string | undefined,
): CacheTapPlan {
  const [nic] = vmNics;
  if (links.length === 0) return { kind: "none" };
  if (nic === undefined) {
    return { kind: "refuse", reason: `the cached VMs have no NIC and the pod has ${links.length} interfaces` };
  }
  if (vmNics.length > 1) return { kind: "refuse", reason: `the cached VMs have ${vmNics.length} NICs` };
  if (links.length > 1) {
    return { kind: "refuse", reason: `the pod has ${links.length} interfaces and a cached VM has one NIC` };
  }
  const [link] = links;
  if (link === undefined) return { kind: "none" };
  if (link.tap !== nic.tapName) {
    return { kind: "refuse", reason: `the pod's tap is ${link.tap}, the cached VM's ${nic.tapName}` };
  }
  if (podNetnsPath === undefined) {
    return { kind: "refuse", reason: "the sandbox has no network namespace to move the cached VM's tap into" };
  }
  if (link.mtu === undefined) return { kind: "refuse", reason: `the MTU of ${link.veth} is not known` };
  const tap = link.tap;
  return {
    kind: "move",
    steps: [
      // The tap setup made for a VM of its own; the filters on it go with it.
      { where: "pod", op: { file: "ip", args: ["link", "del", tap], iface: tap } },
      { where: "cache", op: { file: "ip", args: ["link", "set", tap, "netns", podNetnsPath], iface: tap } },
      ...retapOps({ veth: link.veth, tap, mtu: link.mtu }).map((op) => ({ where: "pod" as const, op })),
    ],
  };
}
