import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { IPFamily } from "../protocol/gen/types_pb.js";
import { maxParsedLines, parseAddrs, parseRoutes, validPrefix } from "./network-parse.js";

// Captured from busybox 1.35 `ip` in a network namespace with a veth renamed eth9.
const addrOut = `1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever
3: eth9    inet 10.9.0.2/24 scope global eth9\\       valid_lft forever preferred_lft forever
3: eth9    inet6 fd09::2/64 scope global tentative \\       valid_lft forever preferred_lft forever
3: eth9    inet6 fe80::1c43:5fff:fed3:9804/64 scope link tentative \\       valid_lft forever preferred_lft forever
garbage line
4: eth1    inet 10.9.0.999/24 scope global eth1
`;

const routeOut = `default via 10.9.0.1 dev eth9 
10.9.0.0/24 dev eth9 scope link  src 10.9.0.2 
10.9.1.0/24 via 10.9.0.1 dev eth9 onlink 
local 127.0.0.0/8 dev lo table local scope host  src 127.0.0.1 
10.9.7.0/24 dev eth9 table 100
`;

const route6Out = `fd09::/64 dev eth9  metric 256 
fe80::/64 dev eth9  metric 256 
default via fd09::1 dev eth9  metric 1024 
multicast ff00::/8 dev eth9  metric 256 
`;

describe("parseAddrs", () => {
  it("groups addresses by link with family and prefix, skipping lines that do not parse", () => {
    const m = parseAddrs(addrOut);

    assert.deepEqual([...m.keys()], ["lo", "eth9"]);
    assert.deepEqual(m.get("eth9"), [
      { family: IPFamily.v4, address: "10.9.0.2", mask: "24" },
      { family: IPFamily.v6, address: "fd09::2", mask: "64" },
      { family: IPFamily.v6, address: "fe80::1c43:5fff:fed3:9804", mask: "64" },
    ]);
  });

  it("reads at most maxParsedLines lines", () => {
    const many = "1: lo    inet 127.0.0.1/8 scope host lo\n".repeat(maxParsedLines + 10);

    assert.equal(parseAddrs(many).get("lo")?.length, maxParsedLines);
  });
});

describe("parseRoutes", () => {
  it("reads gateway, device, source, scope and onlink of main-table unicast routes", () => {
    assert.deepEqual(parseRoutes(routeOut, IPFamily.v4), [
      { dest: "default", gateway: "10.9.0.1", device: "eth9", source: "", scope: 0, family: IPFamily.v4, flags: 0 },
      {
        dest: "10.9.0.0/24",
        gateway: "",
        device: "eth9",
        source: "10.9.0.2",
        scope: 253,
        family: IPFamily.v4,
        flags: 0,
      },
      { dest: "10.9.1.0/24", gateway: "10.9.0.1", device: "eth9", source: "", scope: 0, family: IPFamily.v4, flags: 4 },
    ]);
  });

  it("leaves out the kernel's multicast route and skips metrics", () => {
    const r = parseRoutes(route6Out, IPFamily.v6);

    assert.deepEqual(
      r.map((x) => `${x.dest} ${x.gateway} ${x.device}`),
      ["fd09::/64  eth9", "fe80::/64  eth9", "default fd09::1 eth9"],
    );
    assert.ok(r.every((x) => x.family === IPFamily.v6));
  });
});

describe("validPrefix", () => {
  it("accepts addresses and prefixes in range, refuses the rest", () => {
    for (const ok of ["10.0.0.0/8", "10.0.0.1", "::/0", "fd00::/64", "fd00::1/128"]) assert.ok(validPrefix(ok), ok);
    for (const bad of ["10.0.0.0/33", "fd00::/129", "10.0.0.0/", "x/8", "10.0.0.0/8/1", "10.0.0.0/-1"])
      assert.ok(!validPrefix(bad), bad);
  });
});
