// `delete --force` when the sandbox's service is gone.

import { NetnsManager } from "../network/netns.js";
import { hostCgroupFs } from "../platform/cgroups.js";
import type { StateStore } from "../sandbox/persist.js";
import { cleanupStale, procTable } from "../sandbox/stale.js";
import { podNetworkPort } from "./pod-network.js";
import type { RuntimeContext } from "./runtime-context.js";
import { sandboxOf } from "./service-client.js";

export async function forceCleanup(ctx: RuntimeContext, store: StateStore, containerId: string): Promise<void> {
  const sid = await sandboxOf(store, containerId);
  const d = ctx.sandboxDeps();
  const netns = new NetnsManager({ runner: ctx.runner });
  await cleanupStale(
    {
      store,
      mounter: d.mounter,
      readMountInfo: d.readMountInfo,
      netns,
      network: podNetworkPort(netns, ctx.logger),
      logger: ctx.logger,
      processes: procTable,
      cgroups: hostCgroupFs,
    },
    sid,
    containerId,
  );
}
