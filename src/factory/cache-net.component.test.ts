// The cache's netns appliers over FakeNetns (nothing is made on the host): which namespace each tap
// command runs in, where a failing one stops, and that a sweep removes only this cache's namespaces.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import type { RunResult } from "../platform/process.js";
import { FakeNetns } from "../../test/helpers/fake-host.js";
import { kataErrorChain } from "../../test/helpers/fakes.js";
import { cacheNetnsName, cacheTapPlan } from "./cache-net-plan.js";
import { makeVmNetns, moveCachedTap, sweepCacheNetns } from "./cache-net.js";
import { templateNic } from "./template-plan.js";

const cacheDir = "/run/kata-ts/cache.sock.d";

/** Fails the `failAt`-th command (1-based), as `ip` does for a device that is not there. */
class FailingNetns extends FakeNetns {
  #n = 0;
  readonly #failAt: number;
  constructor(failAt: number) {
    super();
    this.#failAt = failAt;
  }
  override run(nsPath: string, file: string, args: readonly string[]): Promise<RunResult> {
    const r = super.run(nsPath, file, args);
    return ++this.#n === this.#failAt
      ? Promise.resolve({ code: 1, signal: null, stdout: "", stderr: 'Cannot find device "tap0_kata"' })
      : r;
  }
}

describe("the VM cache's network namespaces (fake netns)", () => {
  const plan = cacheTapPlan([templateNic], [{ veth: "eth0", tap: "tap0_kata", mtu: 1500 }], "/var/run/netns/pod");
  const steps = plan.kind === "move" ? plan.steps : [];

  it("runs the move in the cached VM's netns and the rest in the pod's", async () => {
    const netns = new FakeNetns();

    await moveCachedTap(netns, { cache: "/proc/1/fd/9", pod: "/var/run/netns/pod" }, steps, AbortSignal.timeout(5000));

    assert.deepEqual(
      netns.calls.map((c) => c.arg.split(" ").slice(0, 4).join(" ")),
      [
        "/var/run/netns/pod ip link del",
        "/proc/1/fd/9 ip link set",
        "/var/run/netns/pod ip link set",
        "/var/run/netns/pod tc qdisc add",
        "/var/run/netns/pod tc filter add",
        "/var/run/netns/pod tc filter del",
        "/var/run/netns/pod tc filter add",
      ],
    );
  });

  it("stops at the first command that fails, naming it, its interface and namespace", async () => {
    const netns = new FailingNetns(2);

    await assert.rejects(
      moveCachedTap(netns, { cache: "/proc/1/fd/9", pod: "/var/run/netns/pod" }, steps, AbortSignal.timeout(5000)),
      kataErrorChain(
        Code.Internal,
        "ip link set tap0_kata netns /var/run/netns/pod (interface tap0_kata) in /proc/1/fd/9",
        "Cannot find device",
      ),
    );
    assert.equal(netns.calls.length, 2);
  });

  it("makes a VM's netns afresh, and a sweep removes this cache's namespaces only", async () => {
    const netns = new FakeNetns();
    const runDir = await mkdtemp(path.join(tmpdir(), "kata-ts-netns-"));
    try {
      await netns.create(cacheNetnsName(cacheDir, "cache-1"));
      const nsPath = await makeVmNetns(netns, cacheDir, "cache-1", AbortSignal.timeout(5000));
      assert.equal(nsPath, `/var/run/netns/${cacheNetnsName(cacheDir, "cache-1")}`);
      const ours = [cacheNetnsName(cacheDir, "cache-1"), cacheNetnsName(cacheDir, "cache-7")];
      const theirs = cacheNetnsName("/run/other/cache.sock.d", "cache-1");
      for (const n of [...ours, theirs, "kata-ts-pod1"]) await writeFile(path.join(runDir, n), "");

      const removed = await sweepCacheNetns(netns, cacheDir, runDir);

      assert.deepEqual(removed.sort(), ours.sort());
      assert.deepEqual(
        netns.calls.filter((c) => c.op === "remove").map((c) => c.arg),
        [ours[0], ...ours.sort()],
      );
    } finally {
      await rm(runDir, { recursive: true, force: true });
    }
  });
});
