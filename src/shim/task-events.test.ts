// TaskOOM: the pod's OOM listener (fed by the guest's GetOOMEvent) reaches the publisher as containerd's
// TaskOOM. The guest side is a scripted agent answering GetOOMEvent; the publisher is a recorder.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { deferred } from "../base/async.js";
import { TaskOOMSchema } from "../protocol/gen/containerd/api/events/task_pb.js";
import { PodCore } from "../sandbox/pod-core.js";
import type { PodContainer } from "../sandbox/pod-container.js";
import type { Sandbox } from "../sandbox/sandbox.js";
import { Harness } from "../../test/helpers/harness.js";
import type { EventPublisher } from "./events.js";
import { TaskEvents } from "./task-events.js";

let h: Harness;

describe("TaskOOM from the guest's OOM events", () => {
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it("publishes TaskOOM naming the container for each kill the guest reports, for known containers only", async () => {
    const published: { topic: string; containerId: unknown }[] = [];
    const publisher: EventPublisher = {
      publish<D extends DescMessage>(topic: string, schema: D, message: MessageInitShape<D>): void {
        assert.equal(schema.typeName, TaskOOMSchema.typeName);
        // CAST: the schema was just checked to be TaskOOM's, whose init shape has containerId.
        published.push({ topic, containerId: (message as { containerId?: string }).containerId });
      },
      close: () => Promise.resolve(),
    };
    const events = new TaskEvents(publisher, 1);
    const core = new PodCore("sb1", h.podDeps(), h.podOptions("sb1"));
    core.oomListeners.add((id) => {
      events.oom(id);
    });
    // CAST: watchOom reads only oomKills and (for the state file) persisted() of a container.
    core.containers.set("c1", { oomKills: 0, persisted: () => ({}) } as unknown as PodContainer);
    const lost = new AbortController();
    const script = ["c1", "unknown", "c1"];
    const drained = deferred<undefined>();
    const sandbox = {
      lost: lost.signal,
      agent: {
        getOOMEvent: () => {
          const next = script.shift();
          if (next === undefined) {
            drained.resolve(undefined);
            lost.abort();
            return Promise.reject(new Error("sandbox lost"));
          }
          return Promise.resolve({ containerId: next });
        },
      },
    };

    // CAST: watchOom uses only `lost` and `agent.getOOMEvent` of the sandbox.
    await core.watchOom(sandbox as unknown as Sandbox);
    await drained.promise;

    assert.deepEqual(published, [
      { topic: "/tasks/oom", containerId: "c1" },
      { topic: "/tasks/oom", containerId: "c1" },
    ]);
  });
});
