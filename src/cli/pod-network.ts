// The pod network port as src/network implements it: scan, plan and tc inside the pod's namespace.

import type { Logger } from "../base/log.js";
import { setupNetwork, sweepNetwork, teardownNetwork } from "../network/apply.js";
import type { NetnsPort } from "../network/netns.js";
import type { PodNetworkPort } from "../sandbox/pod-network.js";

export function podNetworkPort(netns: NetnsPort, logger: Logger): PodNetworkPort {
  const deps = { netns, logger };
  return {
    setup: (nsPath, model, undo, signal) => setupNetwork(deps, nsPath, model, undo, signal),
    teardown: (nsPath, links) => teardownNetwork(deps, nsPath, links),
    sweep: async (nsPath) => {
      await sweepNetwork(deps, nsPath);
    },
  };
}
