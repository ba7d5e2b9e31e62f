// `state` and `list` while a sandbox's VM boots: the container is "creating", as runc reports during a
// create (component harness: a fake VM whose boot hangs, and a socket standing for the service).

import assert from "node:assert/strict";
import net from "node:net";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code } from "../../base/errors.js";
import { delay } from "../../base/async.js";
import { kataErrorChain } from "../../../test/helpers/fakes.js";
import { Harness } from "../../../test/helpers/harness.js";
import { Pod } from "../../sandbox/pod.js";
import { containerState, listContainers } from "./state.js";

let h: Harness;

describe("state while the VM boots (fake VM that never answers)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it("reports creating, with the bundle and creation time; the failed create leaves nothing", async () => {
    h.hypervisor.startFault({ kind: "hang" });
    const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
    const bundle = await h.bundle("sb1", { args: ["true"] });
    const ac = new AbortController();
    const creating = pod.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, ac.signal);
    for (let i = 0; i < 200 && h.hypervisor.configs.length === 0; i++) await delay(10);
    assert.equal(h.hypervisor.configs.length, 1, "the VM's start was never asked for");
    // The service's socket: `state` tells a create in progress from one whose service died by it.
    const service = net.createServer();
    await new Promise<void>((resolve) => service.listen(h.store.socketPath("sb1"), resolve));
    try {
      const st = await containerState(h.root, "sb1");
      assert.equal(st.status, "creating");
      assert.equal(st.bundle, bundle);
      assert.equal(st.pid, h.servicePid("sb1"));
      assert.ok(Date.now() - Date.parse(st.created) < 10_000, st.created);
      const rows = await listContainers(h.root, () => undefined);
      assert.deepEqual(
        rows.map((r) => [r.id, r.status]),
        [["sb1", "creating"]],
      );
    } finally {
      await new Promise((resolve) => service.close(resolve));
    }
    ac.abort();
    await assert.rejects(creating, kataErrorChain(Code.Cancelled));
    await assert.rejects(containerState(h.root, "sb1"), kataErrorChain(Code.NotFound, "does not exist"));
    assert.deepEqual(await h.leaks(), []);
  });
});
