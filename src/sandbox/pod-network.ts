// What the sandbox layer needs of pod networking, as a port: wire the pod's network namespace to the
// VM (taps mirrored to the CNI's interfaces) and take that wiring apart again. src/network implements
// it (scan, plan, tc); the sandbox layer only carries the result to QEMU and to the guest agent.

import type { CleanupStack } from "../base/cleanup.js";
import type { InternetworkingModel } from "../config/types.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ARPNeighborSchema, InterfaceSchema, RouteSchema } from "../protocol/gen/types_pb.js";

/** One interface of the pod's netns and the tap that mirrors it for the VM. */
export interface NetworkLink {
  readonly veth: string;
  readonly tap: string;
  /** The veth's MTU, which its tap has too (a VM cache's tap is set to it: docs/factory.md). */
  readonly mtu?: number;
}

/** The pod's network as wired: what QEMU gets (NICs) and what the guest agent is told. */
export interface PodNetwork {
  readonly links: readonly NetworkLink[];
  /** One virtio-net NIC per link: the tap QEMU opens and the MAC the guest sees (the veth's). */
  readonly nics: readonly { readonly tapName: string; readonly mac: string }[];
  readonly interfaces: readonly MessageInitShape<typeof InterfaceSchema>[];
  readonly routes: readonly MessageInitShape<typeof RouteSchema>[];
  readonly neighbors: readonly MessageInitShape<typeof ARPNeighborSchema>[];
  /** What was skipped (unsupported link kinds, address families), for the log. */
  readonly warnings: readonly string[];
}

export interface PodNetworkPort {
  /**
   * Scans the namespace at `nsPath` and wires each interface to a tap (the `model`'s way); every step's
   * undo goes on `undo`, so a failure part-way leaves the namespace as it was found.
   */
  setup(nsPath: string, model: InternetworkingModel, undo: CleanupStack, signal: AbortSignal): Promise<PodNetwork>;
  /** Removes the taps and filters of `links`, leaving the namespace's own interfaces as found. Idempotent. */
  teardown(nsPath: string, links: readonly NetworkLink[]): Promise<void>;
  /** Removes taps and filters of ours whose links were never saved (a service killed during setup). */
  sweep(nsPath: string): Promise<void>;
}

/** No network at all: `internetworking_model = "none"`, or no namespace of the sandbox's own. */
export const noPodNetwork: PodNetwork = {
  links: [],
  nics: [],
  interfaces: [],
  routes: [],
  neighbors: [],
  warnings: [],
};
