// From a scanned pod namespace to what the sandbox does with it (pure): the host commands that connect
// each endpoint to a tap (Kata's tcfilter model: u32 match-all + mirred redirect both ways, since this
// kernel has no cls_flower), the QEMU NICs, and the agent's Interface, Route and ARPNeighbor messages.
// Kata: virtcontainers/network_linux.go (setupTCFiltering, generateVCNetworkStructures).

import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, KataError } from "../base/errors.js";
import {
  IPFamily,
  type ARPNeighborSchema,
  type IPAddressSchema,
  type InterfaceSchema,
  type RouteSchema,
} from "../protocol/gen/types_pb.js";
import type { Endpoint, IpFamily, ScannedNetns } from "./scan.js";

export type NetworkModel = "tcfilter" | "none" | "macvtap";

export type InterfaceInit = MessageInitShape<typeof InterfaceSchema>;
export type RouteInit = MessageInitShape<typeof RouteSchema>;
export type ARPNeighborInit = MessageInitShape<typeof ARPNeighborSchema>;
type IPAddressInit = MessageInitShape<typeof IPAddressSchema>;

export interface NetCommand {
  readonly file: "ip" | "tc";
  readonly args: readonly string[];
}

export interface NetOp extends NetCommand {
  /** The interface the command changes, for error messages. */
  readonly iface: string;
  /**
   * What takes it back. Absent when a later-registered undo already covers it: deleting the tap removes
   * its MTU, qdisc and filter; deleting the veth's ingress qdisc removes the veth's filter.
   */
  readonly undo?: NetCommand;
}

/** One endpoint and its tap: what teardown needs (persist it with the sandbox). */
export interface NetLink {
  readonly veth: string;
  readonly tap: string;
  readonly mac: string;
  readonly mtu: number;
}

export interface NetworkPlan {
  readonly model: "tcfilter" | "none";
  readonly links: readonly NetLink[];
  /** Host commands, in order, each run inside the pod namespace. */
  readonly ops: readonly NetOp[];
  /** QEMU tap netdevs: the guest NIC gets the veth's MAC, so the guest answers for the pod IP. */
  readonly nics: readonly { readonly tapName: string; readonly mac: string }[];
  readonly interfaces: readonly InterfaceInit[];
  /** Link routes (no gateway) first: a gateway must be reachable when its route is added. */
  readonly routes: readonly RouteInit[];
  readonly neighbors: readonly ARPNeighborInit[];
  readonly warnings: readonly string[];
}

/** The largest MTU a tap accepts (tun's max_mtu, measured on Linux 6.x: 65521; a veth takes 65535). */
export const tapMaxMtu = 65521;

/** IFF_NOARP: the only raw flag Kata passes on (a pod interface without ARP, e.g. a /32 point-to-point). */
const iffNoarp = 0x80;
/** NUD_PERMANENT: only static neighbours are sent. */
const nudPermanent = 0x80;

export const emptyPlan: NetworkPlan = {
  model: "none",
  links: [],
  ops: [],
  nics: [],
  interfaces: [],
  routes: [],
  neighbors: [],
  warnings: [],
};

/** The tap that carries endpoint number `index` (its position in the scan). */
export function tapName(index: number): string {
  return `tap${index}_kata`;
}

/** Throws for a model kata-ts cannot set up, before anything is touched. */
export function checkModel(model: string): asserts model is "tcfilter" | "none" {
  if (model === "tcfilter" || model === "none") return;
  if (model === "macvtap") {
    throw new KataError(
      Code.Unimplemented,
      "internetworking_model macvtap is not supported by kata-ts; use tcfilter or none",
    );
  }
  throw new KataError(Code.InvalidArgument, `internetworking_model ${model} is not known; use tcfilter or none`);
}

function family(f: IpFamily): IPFamily {
  return f === "v4" ? IPFamily.v4 : IPFamily.v6;
}

function redirect(from: string, to: string): string[] {
  return [
    "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all",
    "u32", "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
  ]; // prettier-ignore
}

/** A tap, up, with `mtu`: the first of a link's ops, and all of a VM template's (no veth to mirror). */
export function tapOps(tap: string, mtu: number): NetOp[] {
  return [
    { file: "ip", args: ["tuntap", "add", "dev", tap, "mode", "tap"], iface: tap, undo: { file: "ip", args: ["link", "del", tap] } },
    { file: "ip", args: ["link", "set", tap, "mtu", String(mtu), "up"], iface: tap },
  ]; // prettier-ignore
}

function linkOps(e: Endpoint, tap: string): NetOp[] {
  const veth = e.name;
  // Attaching a qdisc to a device whose txqlen is 0 (as CNI's bridge plugin makes veths) sets it to
  // 1000 (measured on Linux 6.1); setting it back sticks, also after the qdisc is deleted again.
  const keepTxqlen: NetOp[] =
    e.txqlen === 0 ? [{ file: "ip", args: ["link", "set", "dev", veth, "txqlen", "0"], iface: veth }] : [];
  return [
    ...tapOps(tap, e.mtu),
    { file: "tc", args: ["qdisc", "add", "dev", veth, "ingress"], iface: veth, undo: { file: "tc", args: ["qdisc", "del", "dev", veth, "ingress"] } },
    ...keepTxqlen,
    { file: "tc", args: redirect(veth, tap), iface: veth },
    { file: "tc", args: ["qdisc", "add", "dev", tap, "ingress"], iface: tap },
    { file: "tc", args: redirect(tap, veth), iface: tap },
  ]; // prettier-ignore
}

/**
 * Rewires a link whose tap was replaced by another device of the same name (a VM cache's tap, opened by
 * a QEMU that booted before the pod existed and moved into its netns: docs/factory.md#nics-in-cached-vms).
 * The moved tap is down and has no qdisc (a netns move takes a device down), and the veth's filter
 * redirects to the deleted tap (mirred holds the device, not its name): both are made again. The veth's
 * ingress qdisc stays, with its undo, as setup made it; the tap's own qdisc and filter go with the tap.
 */
export function retapOps(link: { readonly veth: string; readonly tap: string; readonly mtu: number }): NetOp[] {
  const { veth, tap } = link;
  return [
    { file: "ip", args: ["link", "set", tap, "mtu", String(link.mtu), "up"], iface: tap },
    { file: "tc", args: ["qdisc", "add", "dev", tap, "ingress"], iface: tap },
    { file: "tc", args: redirect(tap, veth), iface: tap },
    { file: "tc", args: ["filter", "del", "dev", veth, "parent", "ffff:"], iface: veth },
    { file: "tc", args: redirect(veth, tap), iface: veth },
  ];
}

function interfaceOf(e: Endpoint): InterfaceInit {
  const addresses: IPAddressInit[] = e.addresses.map((a) => ({
    family: family(a.family),
    address: a.address,
    mask: String(a.prefixLength),
  }));
  return {
    device: e.name,
    name: e.name,
    IPAddresses: addresses,
    mtu: BigInt(e.mtu),
    hwAddr: e.mac,
    type: e.kind,
    rawFlags: e.flags.includes("NOARP") ? iffNoarp : 0,
  };
}

/**
 * What the sandbox does with the scanned namespace under `model`. "none" gives an empty plan (no NIC).
 * Throws UNIMPLEMENTED for macvtap, INVALID_ARGUMENT for an MTU no tap accepts, FAILED_PRECONDITION when
 * taps of an earlier setup are still in the namespace.
 */
export function planNetwork(scan: ScannedNetns, model: NetworkModel): NetworkPlan {
  checkModel(model);
  if (model === "none") return emptyPlan;
  if (scan.existingTaps.length > 0) {
    throw new KataError(
      Code.FailedPrecondition,
      `the network namespace already has ${scan.existingTaps.join(", ")}: another sandbox uses it, or one was not cleaned up`,
    );
  }
  const links: NetLink[] = [];
  const ops: NetOp[] = [];
  for (const [i, e] of scan.endpoints.entries()) {
    const tap = tapName(i);
    if (e.mtu > tapMaxMtu) {
      throw new KataError(
        Code.InvalidArgument,
        `interface ${e.name} has MTU ${e.mtu}, above the ${tapMaxMtu} its tap ${tap} accepts; lower the pod network's MTU`,
        { details: { iface: e.name, mtu: e.mtu } },
      );
    }
    links.push({ veth: e.name, tap, mac: e.mac, mtu: e.mtu });
    ops.push(...linkOps(e, tap));
  }
  const routes: RouteInit[] = scan.routes.map((r) => ({
    dest: r.dest,
    gateway: r.gateway ?? "",
    device: r.device,
    source: r.source ?? "",
    scope: r.scope,
    family: family(r.family),
  }));
  const warnings = [...scan.warnings];
  if (links.length === 0)
    warnings.push("no veth or physical interface in the namespace: the VM gets no network device");
  return {
    model,
    links,
    ops,
    nics: links.map((l) => ({ tapName: l.tap, mac: l.mac })),
    interfaces: scan.endpoints.map(interfaceOf),
    routes: [...routes.filter((r) => r.gateway === ""), ...routes.filter((r) => r.gateway !== "")],
    neighbors: scan.neighbors.map((n) => ({
      toIPAddress: { family: family(n.family), address: n.address, mask: "" },
      device: n.device,
      lladdr: n.lladdr,
      state: nudPermanent,
      flags: 0,
    })),
    warnings,
  };
}

/** One line for the log or `kata-ts env`: "tcfilter: eth0 (02:..., mtu 1500, 10.88.0.5/16) via tap0_kata". */
export function describeNetwork(plan: NetworkPlan): string {
  if (plan.model === "none") return "none (no network device)";
  if (plan.links.length === 0) return "tcfilter: no interface";
  const parts = plan.links.map((l, i) => {
    const addrs = (plan.interfaces[i]?.IPAddresses ?? []).map((a) => `${a.address ?? ""}/${a.mask ?? ""}`);
    return `${l.veth} (${[l.mac, `mtu ${l.mtu}`, ...addrs].join(", ")}) via ${l.tap}`;
  });
  return `tcfilter: ${parts.join("; ")}`;
}
