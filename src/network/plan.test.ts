// Golden-file tests of the scan and the tcfilter plan, on `ip -j` output captured from real namespaces
// (test/fixtures/golden/network/capture.sh), plus the plan's refusals.

import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Code, isKataError } from "../base/errors.js";
import { IPFamily } from "../protocol/gen/types_pb.js";
import { describeNetwork, planNetwork, tapMaxMtu, type NetworkPlan } from "./plan.js";
import { parseScan, scanCommands, type IpJsonOutput, type ScannedNetns } from "./scan.js";

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    assert.notEqual(up, dir, "no package.json above the test file");
    dir = up;
  }
  return dir;
}

const goldenDir = join(repoRoot(), "test", "fixtures", "golden", "network");

function captured(scenario: string): IpJsonOutput {
  const read = (f: string): string => readFileSync(join(goldenDir, scenario, `${f}.json`), "utf8");
  return {
    link: read("link"),
    addr: read("addr"),
    route4: read("route4"),
    route6: read("route6"),
    neigh: read("neigh"),
  };
}

/** JSON with bigint (the Interface's uint64 mtu) as a decimal string. */
function render(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? `${x}n` : x), 2) + "\n";
}

/** Compares `value` with test/fixtures/golden/network/<scenario>/<name>.json; UPDATE_GOLDEN=1 rewrites it. */
function assertGolden(scenario: string, name: string, value: unknown): void {
  const file = join(goldenDir, scenario, `${name}.json`);
  const actual = render(value);
  if (process.env["UPDATE_GOLDEN"] === "1") writeFileSync(file, actual);
  assert.equal(actual, readFileSync(file, "utf8"), `golden ${file} differs (UPDATE_GOLDEN=1 rewrites it)`);
}

/** The plan with each op as one command line (and its undo after " | undo: "), for a readable file. */
function readablePlan(plan: NetworkPlan): unknown {
  const line = (c: { file: string; args: readonly string[] }): string => `${c.file} ${c.args.join(" ")}`;
  return {
    ...plan,
    ops: plan.ops.map((o) => `${line(o)}${o.undo === undefined ? "" : ` | undo: ${line(o.undo)}`} (${o.iface})`),
  };
}

function planOrError(scan: ScannedNetns): unknown {
  try {
    return readablePlan(planNetwork(scan, "tcfilter"));
  } catch (e) {
    assert.ok(isKataError(e), String(e));
    return { error: { code: e.code, message: e.message } };
  }
}

const scenarios = ["cni-bridge", "two-ifaces-ipv6", "skipped-kinds", "already-set-up"];

describe("network scan and plan golden files", () => {
  for (const s of scenarios) {
    it(`${s}: scan and tcfilter plan`, () => {
      const scan = parseScan(captured(s));
      assertGolden(s, "expected-scan", scan);
      assertGolden(s, "expected-plan", planOrError(scan));
    });
  }
});

describe("parseScan", () => {
  it("reads the CNI bridge plugin's pod: eth0 10.88.0.5/16, default via 10.88.0.1, no link-local", () => {
    const scan = parseScan(captured("cni-bridge"));
    assert.deepEqual(
      scan.endpoints.map((e) => [e.name, e.kind, e.mtu, e.addresses]),
      [["eth0", "veth", 1500, [{ family: "v4", address: "10.88.0.5", prefixLength: 16 }]]],
    );
    assert.match(scan.endpoints[0]?.mac ?? "", /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    // The kernel's prefix route and fe80::/64 are the guest kernel's to make.
    assert.deepEqual(scan.routes, [{ dest: "default", gateway: "10.88.0.1", device: "eth0", scope: 0, family: "v4" }]);
    assert.deepEqual(scan.warnings, []);
  });

  it("keeps two interfaces, global IPv6, gateway, on-link and host routes, and only permanent neighbours", () => {
    const scan = parseScan(captured("two-ifaces-ipv6"));
    assert.deepEqual(
      scan.endpoints.map((e) => [e.name, e.mtu, e.addresses.map((a) => `${a.address}/${a.prefixLength}`)]),
      [
        ["eth0", 1500, ["10.1.0.2/24", "2001:db8:1::2/64"]],
        ["eth1", 9000, ["192.168.5.10/24"]],
      ],
    );
    assert.deepEqual(
      scan.routes.map((r) => `${r.dest} ${r.gateway ?? "-"} ${r.device} ${r.scope} ${r.family}`),
      [
        "default 10.1.0.1 eth0 0 v4",
        "10.9.9.9/32 192.168.5.1 eth1 0 v4",
        "10.200.0.0/16 - eth1 253 v4",
        "172.16.0.0/12 192.168.5.1 eth1 0 v4",
        "default 2001:db8:1::1 eth0 0 v6",
      ],
    );
    assert.deepEqual(
      scan.neighbors.map((n) => `${n.address} ${n.family} ${n.device} ${n.lladdr}`),
      ["10.1.0.1 v4 eth0 02:00:00:00:01:01", "2001:db8:1::1 v6 eth0 02:00:00:00:01:01"],
    );
  });

  it("skips a tunnel, a bridge and a macvlan, and the tunnel's routes, each with a warning naming it", () => {
    const scan = parseScan(captured("skipped-kinds"));
    assert.deepEqual(
      scan.endpoints.map((e) => e.name),
      ["eth0"],
    );
    assert.deepEqual(scan.warnings, [
      "skipped interface vxlan100 (vxlan): only veth and physical interfaces are carried into the VM",
      "skipped interface br0 (bridge): only veth and physical interfaces are carried into the VM",
      "skipped interface mv0 (macvlan): only veth and physical interfaces are carried into the VM",
      "skipped route 10.51.0.0/16 dev vxlan100: vxlan100 (vxlan) is not carried into the VM",
    ]);
    assert.ok(scan.routes.every((r) => r.device === "eth0"));
  });

  it("sets our own taps aside instead of taking them for endpoints", () => {
    const scan = parseScan(captured("already-set-up"));
    assert.deepEqual(
      scan.endpoints.map((e) => e.name),
      ["eth0"],
    );
    assert.deepEqual(scan.existingTaps, ["tap0_kata"]);
    assert.deepEqual(scan.warnings, []);
  });

  it("takes a link without a kind (a moved NIC) as physical, and warns about other address families", () => {
    const link = JSON.stringify([
      {
        ifindex: 7,
        ifname: "ens4",
        flags: ["UP", "NOARP"],
        mtu: 1460,
        link_type: "ether",
        address: "42:01:0a:00:00:02",
      },
      { ifindex: 8, ifname: "wg0", flags: ["UP"], mtu: 1420, link_type: "none", linkinfo: { info_kind: "wireguard" } },
    ]);
    const addr = JSON.stringify([
      { ifindex: 7, ifname: "ens4", addr_info: [{ family: "mpls", local: "x", prefixlen: 0 }] },
    ]);
    const scan = parseScan({ link, addr, route4: "[]", route6: "", neigh: "[]" });
    assert.deepEqual(
      scan.endpoints.map((e) => [e.name, e.kind]),
      [["ens4", "physical"]],
    );
    assert.deepEqual(scan.warnings, [
      "skipped address x of ens4: address family mpls is not supported",
      "skipped interface wg0 (wireguard): only veth and physical interfaces are carried into the VM",
    ]);
    assert.equal(planNetwork(scan, "tcfilter").interfaces[0]?.rawFlags, 0x80);
  });

  it("warns about blackhole and multipath routes, and keeps quiet about local and multicast ones", () => {
    const base = captured("cni-bridge");
    const route4 = JSON.stringify([
      { type: "blackhole", dst: "10.66.0.0/16", flags: [] },
      { dst: "10.67.0.0/16", nexthops: [{ gateway: "10.88.0.1", dev: "eth0" }], flags: [] },
      { type: "local", dst: "10.88.0.5", dev: "eth0", flags: [] },
    ]);
    const route6 = JSON.stringify([{ type: "multicast", dst: "ff00::/8", dev: "eth0", flags: [] }]);
    const scan = parseScan({ ...base, route4, route6 });
    assert.deepEqual(scan.routes, []);
    assert.deepEqual(scan.warnings, [
      "skipped route 10.66.0.0/16: a blackhole route is not supported",
      "skipped route 10.67.0.0/16: a multipath route is not supported",
    ]);
  });

  it("fails with one clear error on output that is not JSON or not shaped like iproute2's", () => {
    const base = captured("cni-bridge");
    assert.throws(
      () => parseScan({ ...base, route4: '[{"dst":' }),
      (e: unknown) =>
        isKataError(e, Code.Internal) && e.message.startsWith("ip -j route show table main: output is not JSON"),
    );
    assert.throws(
      () => parseScan({ ...base, link: '{"ifname":"eth0"}' }),
      (e: unknown) => isKataError(e) && e.message === "ip -j -d link show: output is not a JSON array",
    );
    assert.throws(
      () =>
        parseScan({
          ...base,
          link: '[{"ifname":"eth0","link_type":"ether","linkinfo":{"info_kind":"veth"},"mtu":"big"}]',
        }),
      (e: unknown) => isKataError(e) && e.message === "ip -j -d link show: ifindex of eth0 is not an integer",
    );
  });

  it("names the commands it runs", () => {
    assert.deepEqual(scanCommands.route6, ["-j", "-6", "route", "show", "table", "main"]);
  });
});

describe("planNetwork", () => {
  const scan = parseScan(captured("two-ifaces-ipv6"));

  it("gives each endpoint a tap, an ingress qdisc and a redirect both ways, undoing the tap and qdisc", () => {
    const plan = planNetwork(scan, "tcfilter");
    assert.deepEqual(
      plan.links.map((l) => [l.veth, l.tap, l.mtu]),
      [
        ["eth0", "tap0_kata", 1500],
        ["eth1", "tap1_kata", 9000],
      ],
    );
    assert.deepEqual(
      plan.ops
        .slice(0, 6)
        .map((o) => `${o.file} ${o.args.join(" ")}${o.undo ? ` | ${o.undo.file} ${o.undo.args.join(" ")}` : ""}`),
      [
        "ip tuntap add dev tap0_kata mode tap | ip link del tap0_kata",
        "ip link set tap0_kata mtu 1500 up",
        "tc qdisc add dev eth0 ingress | tc qdisc del dev eth0 ingress",
        "tc filter add dev eth0 parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev tap0_kata",
        "tc qdisc add dev tap0_kata ingress",
        "tc filter add dev tap0_kata parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev eth0",
      ],
    );
    assert.equal(plan.ops.length, 12);
    assert.deepEqual(plan.nics, [
      { tapName: "tap0_kata", mac: scan.endpoints[0]?.mac },
      { tapName: "tap1_kata", mac: scan.endpoints[1]?.mac },
    ]);
  });

  it("describes interfaces with the veth's name, MAC, MTU and prefix lengths as masks", () => {
    const [eth0] = planNetwork(scan, "tcfilter").interfaces;
    assert.deepEqual(eth0, {
      device: "eth0",
      name: "eth0",
      IPAddresses: [
        { family: IPFamily.v4, address: "10.1.0.2", mask: "24" },
        { family: IPFamily.v6, address: "2001:db8:1::2", mask: "64" },
      ],
      mtu: 1500n,
      hwAddr: scan.endpoints[0]?.mac,
      type: "veth",
      rawFlags: 0,
    });
  });

  it("orders link routes before gateway routes and sends permanent neighbours", () => {
    const plan = planNetwork(scan, "tcfilter");
    assert.deepEqual(
      plan.routes.map((r) => `${r.dest} via ${r.gateway === "" ? "-" : r.gateway}`),
      [
        "10.200.0.0/16 via -",
        "default via 10.1.0.1",
        "10.9.9.9/32 via 192.168.5.1",
        "172.16.0.0/12 via 192.168.5.1",
        "default via 2001:db8:1::1",
      ],
    );
    assert.deepEqual(plan.neighbors[0], {
      toIPAddress: { family: IPFamily.v4, address: "10.1.0.1", mask: "" },
      device: "eth0",
      lladdr: "02:00:00:00:01:01",
      state: 0x80,
      flags: 0,
    });
  });

  it("keeps a CNI veth's txqlen of 0, which attaching the ingress qdisc would change", () => {
    const ops = planNetwork(parseScan(captured("cni-bridge")), "tcfilter").ops.map((o) => o.args.join(" "));
    assert.equal(ops.indexOf("link set dev eth0 txqlen 0"), ops.indexOf("qdisc add dev eth0 ingress") + 1);
    assert.ok(!planNetwork(scan, "tcfilter").ops.some((o) => o.args.includes("txqlen")));
  });

  it("plans nothing for none", () => {
    const plan = planNetwork(scan, "none");
    assert.deepEqual([plan.ops, plan.nics, plan.interfaces, plan.routes, plan.neighbors], [[], [], [], [], []]);
    assert.equal(describeNetwork(plan), "none (no network device)");
  });

  it("refuses macvtap clearly", () => {
    assert.throws(
      () => planNetwork(scan, "macvtap"),
      (e: unknown) =>
        isKataError(e, Code.Unimplemented) &&
        e.message === "internetworking_model macvtap is not supported by kata-ts; use tcfilter or none",
    );
  });

  it("refuses an MTU above what a tap accepts, naming the interface", () => {
    const big = {
      ...scan,
      endpoints: scan.endpoints.map((e) => (e.name === "eth1" ? { ...e, mtu: tapMaxMtu + 1 } : e)),
    };
    assert.throws(
      () => planNetwork(big, "tcfilter"),
      (e: unknown) =>
        isKataError(e, Code.InvalidArgument) && e.message.startsWith("interface eth1 has MTU 65522, above the 65521"),
    );
    const atMax = { ...scan, endpoints: scan.endpoints.map((e) => ({ ...e, mtu: tapMaxMtu })) };
    assert.equal(planNetwork(atMax, "tcfilter").links[1]?.mtu, tapMaxMtu);
  });

  it("warns when the namespace has nothing to carry", () => {
    const plan = planNetwork({ ...scan, endpoints: [], routes: [], neighbors: [] }, "tcfilter");
    assert.deepEqual(plan.ops, []);
    assert.deepEqual(plan.warnings, ["no veth or physical interface in the namespace: the VM gets no network device"]);
  });

  it("describes a plan in one line", () => {
    const plan = planNetwork(parseScan(captured("cni-bridge")), "tcfilter");
    assert.match(
      describeNetwork(plan),
      /^tcfilter: eth0 \(([0-9a-f]{2}:){5}[0-9a-f]{2}, mtu 1500, 10\.88\.0\.5\/16\) via tap0_kata$/,
    );
  });
});
