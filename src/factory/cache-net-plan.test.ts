import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cacheNetnsName, cacheNetnsPrefix, cacheTapPlan } from "./cache-net-plan.js";
import { templateNic } from "./template-plan.js";

const eth0 = { veth: "eth0", tap: "tap0_kata", mtu: 1450 };
const podNs = "/var/run/netns/cni-1234";

describe("cacheTapPlan: a cached VM's NIC and the pod's interfaces", () => {
  it("moves the VM's tap into the pod's netns in place of setup's, and wires it to the veth again", () => {
    const plan = cacheTapPlan([templateNic], [eth0], podNs);

    assert.ok(plan.kind === "move");
    assert.deepEqual(
      plan.steps.map((s) => `${s.where}: ${s.op.file} ${s.op.args.join(" ")}`),
      [
        "pod: ip link del tap0_kata",
        `cache: ip link set tap0_kata netns ${podNs}`,
        "pod: ip link set tap0_kata mtu 1450 up",
        "pod: tc qdisc add dev tap0_kata ingress",
        "pod: tc filter add dev tap0_kata parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev eth0",
        "pod: tc filter del dev eth0 parent ffff:",
        "pod: tc filter add dev eth0 parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev tap0_kata",
      ],
    );
  });

  it("moves nothing for a pod without interfaces, with or without a NIC in the VM", () => {
    assert.deepEqual(cacheTapPlan([templateNic], [], undefined), { kind: "none" });
    assert.deepEqual(cacheTapPlan([], [], podNs), { kind: "none" });
  });

  it("refuses, saying why, what one cached NIC cannot serve", () => {
    const reason = (p: ReturnType<typeof cacheTapPlan>): string => (p.kind === "refuse" ? p.reason : p.kind);
    const eth1 = { veth: "eth1", tap: "tap1_kata", mtu: 1500 };
    assert.equal(
      reason(cacheTapPlan([templateNic], [eth0, eth1], podNs)),
      "the pod has 2 interfaces and a cached VM has one NIC",
    );
    assert.equal(reason(cacheTapPlan([], [eth0], podNs)), "the cached VMs have no NIC and the pod has 1 interfaces");
    assert.equal(
      reason(cacheTapPlan([templateNic], [eth1], podNs)),
      "the pod's tap is tap1_kata, the cached VM's tap0_kata",
    );
    assert.match(reason(cacheTapPlan([templateNic], [eth0], undefined)), /no network namespace/);
    assert.match(reason(cacheTapPlan([templateNic], [{ veth: "eth0", tap: "tap0_kata" }], podNs)), /MTU of eth0/);
  });

  it("names each cached VM's netns by its cache's directory, so two caches never share one", () => {
    const a = cacheNetnsName("/run/kata-ts/cache.sock.d", "cache-3");
    const b = cacheNetnsName("/run/other/cache.sock.d", "cache-3");
    assert.match(a, /^kata-ts-cache-[0-9a-f]{12}-cache-3$/);
    assert.notEqual(a, b);
    assert.ok(a.startsWith(cacheNetnsPrefix("/run/kata-ts/cache.sock.d")));
    assert.ok(!b.startsWith(cacheNetnsPrefix("/run/kata-ts/cache.sock.d")));
    assert.throws(() => cacheNetnsName("/run/kata-ts/cache.sock.d", "../x"), /cached VM id/);
  });
});
