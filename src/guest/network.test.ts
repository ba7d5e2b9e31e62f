import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code } from "../base/errors.js";
import {
  ARPNeighborSchema,
  IPFamily,
  InterfaceSchema,
  RouteSchema,
  type Interface,
  type Route,
} from "../protocol/gen/types_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { FakeGuestNet } from "../../test/helpers/fake-guest-net.js";
import { LineLogger, kataError } from "../../test/helpers/fakes.js";
import { GuestNetwork, pickNic } from "./network.js";

const nicMac = "02:42:0a:58:00:05";

function iface(init: MessageInitShape<typeof InterfaceSchema>): Interface {
  return create(InterfaceSchema, init);
}

function route(init: MessageInitShape<typeof RouteSchema>): Route {
  return create(RouteSchema, init);
}

const podIface = (): Interface =>
  iface({
    name: "eth0",
    hwAddr: nicMac.toUpperCase(),
    mtu: 1450n,
    IPAddresses: [
      { family: IPFamily.v4, address: "10.88.0.5", mask: "16" },
      { family: IPFamily.v6, address: "fd00::5", mask: "64" },
    ],
  });

let net: FakeGuestNet;
let log: LineLogger;
let gn: GuestNetwork;

describe("GuestNetwork", () => {
  beforeEach(() => {
    net = new FakeGuestNet();
    net.addLink("lo", "00:00:00:00:00:00", { mtu: 65536, up: true, addrs: ["127.0.0.1/8", "::1/128"] });
    net.addLink("enp0s1", nicMac, { addrs: ["192.168.9.9/24"] });
    log = new LineLogger();
    gn = new GuestNetwork(net, log);
  });

  describe("updateInterface", () => {
    it("finds the NIC by MAC whatever its case, renames it, sets MTU and addresses and brings it up", async () => {
      const out = await gn.updateInterface(podIface());

      assert.deepEqual([...net.links.keys()].sort(), ["eth0", "lo"]);
      const eth0 = net.links.get("eth0");
      assert.ok(eth0);
      assert.equal(eth0.up, true);
      assert.equal(eth0.mtu, 1450);
      assert.deepEqual(eth0.addrs, [
        { v6: false, cidr: "10.88.0.5/16" },
        { v6: true, cidr: "fd00::5/64" },
      ]);
      assert.ok(net.calls.includes("ip -6 addr add fd00::5/64 dev eth0"));
      // Set before the rename: the setting belongs to the device and follows it.
      assert.equal(net.sysctls.get("net/ipv6/conf/enp0s1/accept_dad"), "0");
      assert.equal(net.batches, 1, "one process in the guest");
      assert.equal(out.name, "eth0");
      assert.equal(out.hwAddr, nicMac);
      assert.equal(out.mtu, 1450n);
      assert.equal(out.rawFlags & 1, 1);
      assert.deepEqual(
        out.IPAddresses.map((a) => `${a.address}/${a.mask}`),
        ["10.88.0.5/16", "fd00::5/64"],
      );
    });

    it("leaves the MTU alone when it is 0 and does not rename a NIC already named so", async () => {
      net.links.clear();
      net.addLink("eth0", nicMac, { mtu: 1500, up: true });

      await gn.updateInterface(iface({ name: "eth0", hwAddr: nicMac, IPAddresses: [] }));

      assert.deepEqual(net.calls, [
        "ip link set dev eth0 down",
        "ip addr flush dev eth0",
        "ip link set dev eth0 up",
        "ip -o addr show dev eth0",
      ]);
      assert.equal(net.links.get("eth0")?.mtu, 1500);
    });

    it("moves another link holding the name aside", async () => {
      net.addLink("eth0", "02:00:00:00:00:99", { up: true });

      await gn.updateInterface(podIface());

      assert.equal(net.links.get("eth0")?.mac, nicMac);
      assert.equal(net.links.get("kt00000099")?.mac, "02:00:00:00:00:99");
    });

    it("waits for a NIC whose driver is still probing", async () => {
      net.links.delete("enp0s1");
      net.onDelay = (n) => {
        if (n === 3) net.addLink("eth1", nicMac);
      };

      const out = await gn.updateInterface(podIface());

      assert.equal(net.delays, 3);
      assert.equal(out.name, "eth0");
    });

    it("fails with NOT_FOUND naming the MAC when no NIC has it, after waiting about 3 s", async () => {
      await assert.rejects(
        gn.updateInterface(iface({ name: "eth0", hwAddr: "02:00:00:00:00:01" })),
        kataError(Code.NotFound, "no network interface with MAC 02:00:00:00:00:01"),
      );

      assert.equal(net.delays, 60);
      assert.ok(!net.calls.some((c) => c.startsWith("ip link")));
    });

    it("gives a NIC found by currentHwAddr the pod's MAC (a clone of a template keeps the template's NIC)", async () => {
      net.links.delete("enp0s1");
      net.addLink("eth0", "02:6b:74:00:00:01");

      const out = await gn.updateInterface(
        create(InterfaceSchema, { ...podIface(), currentHwAddr: "02:6B:74:00:00:01" }),
      );

      assert.equal(net.delays, 0, "no wait: the NIC is there under its old MAC");
      assert.ok(net.calls.includes(`ip link set dev eth0 address ${nicMac} mtu 1450`), net.calls.join("\n"));
      assert.equal(net.links.get("eth0")?.mac, nicMac);
      assert.equal(out.hwAddr, nicMac);
      assert.deepEqual(
        out.IPAddresses.map((a) => `${a.address}/${a.mask}`),
        ["10.88.0.5/16", "fd00::5/64"],
      );
    });

    it("prefers the NIC that has the pod's MAC already over one with currentHwAddr", async () => {
      net.addLink("eth1", "02:6b:74:00:00:01");

      await gn.updateInterface(create(InterfaceSchema, { ...podIface(), currentHwAddr: "02:6b:74:00:00:01" }));

      assert.equal(net.links.get("eth0")?.mac, nicMac);
      assert.equal(net.links.get("eth1")?.mac, "02:6b:74:00:00:01", "the other NIC is left alone");
      assert.ok(!net.calls.some((c) => c.includes(" address ")));
    });

    it("fails with NOT_FOUND naming both MACs when neither is there", async () => {
      await assert.rejects(
        gn.updateInterface(iface({ name: "eth0", hwAddr: "02:00:00:00:00:01", currentHwAddr: "02:00:00:00:00:02" })),
        kataError(Code.NotFound, "no network interface with MAC 02:00:00:00:00:01 or 02:00:00:00:00:02"),
      );
    });

    const bad: [string, Interface, string][] = [
      ["a bad currentHwAddr", iface({ name: "eth0", hwAddr: nicMac, currentHwAddr: "x" }), "interface.currentHwAddr"],
      ["a name over 15 bytes", iface({ name: "e".repeat(16), hwAddr: nicMac }), "interface.name"],
      ["an empty name", iface({ name: "", hwAddr: nicMac }), "interface.name"],
      ["a name with a slash", iface({ name: "eth/0", hwAddr: nicMac }), "interface.name"],
      ["a name with a space", iface({ name: "eth 0", hwAddr: nicMac }), "interface.name"],
      ["a bad MAC", iface({ name: "eth0", hwAddr: "02:42:0a:58:00" }), "interface.hwAddr"],
      ["an empty MAC", iface({ name: "eth0", hwAddr: "" }), "interface.hwAddr"],
      ["an MTU above 65535", iface({ name: "eth0", hwAddr: nicMac, mtu: 70000n }), "interface.mtu"],
      [
        "an address that is not one",
        iface({ name: "eth0", hwAddr: nicMac, IPAddresses: [{ address: "10.0.0.300", mask: "24" }] }),
        "interface.IPAddresses[0].address",
      ],
      [
        "an IPv4 mask above 32",
        iface({ name: "eth0", hwAddr: nicMac, IPAddresses: [{ address: "10.0.0.3", mask: "33" }] }),
        "interface.IPAddresses[0].mask",
      ],
      [
        "an empty mask",
        iface({ name: "eth0", hwAddr: nicMac, IPAddresses: [{ address: "fd00::3", mask: "" }] }),
        "interface.IPAddresses[0].mask",
      ],
      [
        "an IPv4 address said to be IPv6",
        iface({ name: "eth0", hwAddr: nicMac, IPAddresses: [{ family: IPFamily.v6, address: "10.0.0.3", mask: "8" }] }),
        "interface.IPAddresses[0].address",
      ],
    ];
    for (const [what, input, field] of bad) {
      it(`refuses ${what} with INVALID_ARGUMENT naming ${field}, touching nothing`, async () => {
        await assert.rejects(gn.updateInterface(input), kataError(Code.InvalidArgument, `${field}:`));

        assert.deepEqual(net.calls, []);
      });
    }
  });

  describe("updateRoutes", () => {
    beforeEach(async () => {
      await gn.updateInterface(podIface());
      net.calls.length = 0;
      net.batches = 0;
    });

    it("adds link routes before gateway routes, so a gateway outside every subnet is reachable", async () => {
      // Calico's shape: the address is a /32, the gateway reachable only through a link route.
      const routes = [
        route({ dest: "", gateway: "169.254.1.1", device: "eth0" }),
        route({ dest: "10.99.0.0/16", gateway: "169.254.1.1", device: "eth0" }),
        route({ dest: "169.254.1.1/32", device: "eth0", scope: 253 }),
      ];

      const out = await gn.updateRoutes(routes);

      assert.deepEqual(
        net.calls.filter((c) => c.includes("route replace")),
        [
          "ip route replace 169.254.1.1/32 dev eth0 scope link",
          "ip route replace 10.99.0.0/16 via 169.254.1.1 dev eth0",
          "ip route replace default via 169.254.1.1 dev eth0",
        ],
      );
      assert.ok(out.some((r) => r.dest === "default" && r.gateway === "169.254.1.1" && r.device === "eth0"));
      assert.ok(out.some((r) => r.dest === "169.254.1.1/32" && r.scope === 253));
    });

    it("would fail in the given order: the fake refuses an unreachable gateway", () => {
      assert.throws(
        () => net.runOne("ip", ["route", "replace", "default", "via", "169.254.1.1", "dev", "eth0"]),
        /unreachable/,
      );
    });

    it("adds IPv6 routes with -6, source, and onlink", async () => {
      const out = await gn.updateRoutes([
        route({ dest: "::/0", gateway: "fd00::1", device: "eth0", family: IPFamily.v6 }),
        route({ dest: "10.0.0.0/8", gateway: "10.77.0.1", device: "eth0", source: "10.88.0.5", flags: 4 }),
      ]);

      assert.ok(net.calls.includes("ip -6 route replace default via fd00::1 dev eth0"));
      assert.ok(net.calls.includes("ip route replace 10.0.0.0/8 via 10.77.0.1 dev eth0 src 10.88.0.5 onlink"));
      const v6 = out.filter((r) => r.family === IPFamily.v6);
      assert.deepEqual(
        v6.map((r) => r.dest),
        ["default"],
        "the multicast route the kernel keeps is not listed",
      );
    });

    it("skips a route whose device the guest has not, with a warning naming it, and adds the rest", async () => {
      await gn.updateRoutes([
        route({ dest: "10.1.0.0/16", device: "eth7" }),
        route({ dest: "10.2.0.0/16", device: "eth0" }),
      ]);

      assert.ok(log.lines.some((l) => l.startsWith("warn route skipped") && l.includes('"device":"eth7"')));
      assert.deepEqual(
        net.routes.map((r) => r.dest),
        ["10.2.0.0/16"],
      );
    });

    it("removes the routes an earlier call added that this one does not ask for", async () => {
      await gn.updateRoutes([
        route({ dest: "10.1.0.0/16", device: "eth0" }),
        route({ dest: "10.2.0.0/16", device: "eth0" }),
      ]);

      await gn.updateRoutes([route({ dest: "10.2.0.0/16", device: "eth0" })]);

      assert.deepEqual(
        net.routes.map((r) => r.dest),
        ["10.2.0.0/16"],
      );
      assert.ok(net.calls.includes("ip route del 10.1.0.0/16 dev eth0"));
      assert.equal(net.batches, 2, "one process per call");
    });

    it("removes, on the next call, routes a failed call may have added", async () => {
      await assert.rejects(
        gn.updateRoutes([
          route({ dest: "10.5.0.0/16", device: "eth0" }),
          route({ dest: "default", gateway: "192.0.2.1", device: "eth0" }),
        ]),
        kataError(Code.Internal, "unreachable"),
      );
      assert.deepEqual(
        net.routes.map((r) => r.dest),
        ["10.5.0.0/16"],
      );

      await gn.updateRoutes([]);

      assert.deepEqual(net.routes, []);
    });

    const badRoutes: [string, Route, string][] = [
      ["a dest that is no prefix", route({ dest: "10.0.0.0/33", device: "eth0" }), "routes[0].dest"],
      ["a gateway that is no address", route({ dest: "default", gateway: "gw", device: "eth0" }), "routes[0].gateway"],
      ["a gateway of the other family", route({ dest: "10.0.0.0/8", gateway: "fd00::1" }), "routes[0].gateway"],
      ["a bad device name", route({ dest: "10.0.0.0/8", device: "a/b" }), "routes[0].device"],
      ["neither device nor gateway", route({ dest: "10.0.0.0/8" }), "routes[0]: a route needs"],
      ["a scope above 255", route({ dest: "10.0.0.0/8", device: "eth0", scope: 300 }), "routes[0].scope"],
    ];
    for (const [what, r, field] of badRoutes) {
      it(`refuses ${what} with INVALID_ARGUMENT naming ${field}`, async () => {
        await assert.rejects(gn.updateRoutes([r]), kataError(Code.InvalidArgument, field));

        assert.deepEqual(net.calls, []);
      });
    }
  });

  describe("addArpNeighbors", () => {
    beforeEach(async () => {
      await gn.updateInterface(podIface());
    });

    it("adds IPv4 neighbours with arp -s and skips IPv6 ones with a warning", async () => {
      await gn.addArpNeighbors([
        create(ARPNeighborSchema, {
          toIPAddress: { address: "10.88.0.1" },
          device: "eth0",
          lladdr: "AA:BB:CC:DD:EE:01",
        }),
        create(ARPNeighborSchema, {
          toIPAddress: { family: IPFamily.v6, address: "fd00::1" },
          device: "eth0",
          lladdr: "aa:bb:cc:dd:ee:01",
        }),
      ]);

      assert.deepEqual(net.arp, ["10.88.0.1 aa:bb:cc:dd:ee:01 eth0"]);
      assert.ok(log.lines.some((l) => l.startsWith("warn IPv6 neighbour skipped") && l.includes("fd00::1")));
    });

    it("fails with NOT_FOUND for a device the guest has not", async () => {
      await assert.rejects(
        gn.addArpNeighbors([
          create(ARPNeighborSchema, { toIPAddress: { address: "10.0.0.1" }, device: "eth3", lladdr: nicMac }),
        ]),
        kataError(Code.NotFound, "no interface eth3"),
      );
    });

    it("refuses a bad lladdr and a missing address with INVALID_ARGUMENT naming the field", async () => {
      await assert.rejects(
        gn.addArpNeighbors([
          create(ARPNeighborSchema, { toIPAddress: { address: "10.0.0.1" }, device: "eth0", lladdr: "x" }),
        ]),
        kataError(Code.InvalidArgument, "neighbors[0].lladdr"),
      );
      await assert.rejects(
        gn.addArpNeighbors([create(ARPNeighborSchema, { device: "eth0", lladdr: nicMac })]),
        kataError(Code.InvalidArgument, "neighbors[0].toIPAddress"),
      );
      assert.deepEqual(net.arp, []);
    });
  });

  describe("listInterfaces", () => {
    it("lists every link with its MAC, MTU, flags and addresses", async () => {
      const out = await gn.listInterfaces();

      assert.deepEqual(
        out.map((i) => [i.name, i.hwAddr, i.mtu, i.IPAddresses.map((a) => `${a.address}/${a.mask}`)]),
        [
          ["enp0s1", nicMac, 1500n, ["192.168.9.9/24"]],
          ["lo", "00:00:00:00:00:00", 65536n, ["127.0.0.1/8", "::1/128"]],
        ],
      );
      assert.equal(out[1]?.IPAddresses[1]?.family, IPFamily.v6);
    });
  });
});

describe("pickNic", () => {
  const links = [
    { name: "lo", mac: "00:00:00:00:00:00" },
    { name: "eth0", mac: "02:6b:74:00:00:01" },
    { name: "eth1", mac: "02:42:0a:58:00:05" },
  ];
  it("takes the link with the pod's MAC, as Kata does", () => {
    assert.deepEqual(pickNic(links, "02:42:0a:58:00:05", "02:6b:74:00:00:01"), { name: "eth1", hasMac: true });
  });
  it("else the link with the MAC the host says it has now, to be given the pod's", () => {
    assert.deepEqual(pickNic(links.slice(0, 2), "02:42:0a:58:00:05", "02:6b:74:00:00:01"), {
      name: "eth0",
      hasMac: false,
    });
  });
  it("never a link by its old MAC unless the host named it", () => {
    assert.equal(pickNic(links.slice(0, 2), "02:42:0a:58:00:05", undefined), undefined);
  });
});
