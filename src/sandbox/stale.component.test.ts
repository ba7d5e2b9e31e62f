// Component tests of stale cleanup on the harness: a pod made by the real Pod on a fake VM, whose
// service then "dies", is cleaned up from its state directory alone.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Harness, criAnnotations } from "../../test/helpers/harness.js";
import { Pod } from "./pod.js";
import { cleanupStale } from "./stale.js";

let h: Harness;
const signal = new AbortController().signal;

/** A pod with a running sandbox container and pod container, whose service then dies with its VM. */
async function deadPod(): Promise<{ vmPid: number }> {
  const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
  const volume = await h.volume("data");
  for (const [id, type] of [
    ["sb1", "sandbox"],
    ["c1", "container"],
  ] as const) {
    const bundle = await h.bundle(id, {
      args: ["sleep", "inf"],
      annotations: criAnnotations(type, "sb1"),
      mounts: [{ destination: "/data", type: "bind", source: volume, options: ["rbind", "ro"] }],
    });
    await pod.create({ id, bundle, stdio: (await h.stdio(id)).paths }, signal);
    await pod.start(id, "", signal);
  }
  const vm = h.hypervisor.vm;
  vm.exit();
  // The service notices the VM's death before it "dies" itself: nothing of it writes after this.
  await pod.wait("sb1", "");
  await pod.wait("c1", "");
  return { vmPid: vm.pid };
}

describe("cleanupStale (fake VM, real agent)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it("removes the share mounts, VM directory, netns, mappings and state a dead service left", async () => {
    const { vmPid } = await deadPod();
    const before = await h.leaks();

    await cleanupStale(h.staleDeps(), "sb1", "sb1");

    assert.ok(before.length > 5, `the dead pod left things behind: ${before.join(", ")}`);
    assert.ok(
      before.some((l) => l.startsWith("tap ")),
      `its tap is among them: ${before.join(", ")}`,
    );
    assert.deepEqual(await h.leaks(), [`VM sb1 (fake pid ${vmPid}) not stopped`]);
    assert.ok(
      h.network.calls.some((c) => c.op === "teardown"),
      "the saved taps are torn down",
    );
  });

  it("sweeps a joined netns whose taps were never saved (a service killed while wiring it)", async () => {
    const ns = "/var/run/netns/cni-joined";
    h.netns.joinable.add(ns);
    const state = {
      version: 1,
      id: "sb9",
      servicePid: h.servicePid("sb9"),
      socket: h.store.socketPath("sb9"),
      createdAt: new Date().toISOString(),
      netns: { path: ns, created: false },
      containers: [{ id: "sb9" }],
    };
    await h.store.addMapping("sb9", "sb9");
    // CAST: a state as a service killed mid-create leaves it; save() takes the whole shape.
    await h.store.save(state as unknown as Parameters<typeof h.store.save>[0]);

    await cleanupStale(h.staleDeps(), "sb9", "sb9");

    assert.deepEqual(
      h.network.calls.filter((c) => c.op === "sweep"),
      [{ op: "sweep", nsPath: ns }],
    );
    assert.equal(await h.store.load("sb9"), undefined);
  });

  it("removes only the mapping of a pod container", async () => {
    await deadPod();
    const before = await h.leaks();

    await cleanupStale(h.staleDeps(), "sb1", "c1");

    assert.deepEqual(
      await h.leaks(),
      before.filter((l) => l !== "<root>/containers-mapping/c1"),
    );
  });
});
