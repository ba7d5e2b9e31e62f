// The CNI helper against Debian's real plugins (bridge + host-local + loopback): a pod namespace as
// containerd's CRI plugin makes one, reachable from the host, and nothing of it left after CNI DEL.

import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { after, describe, it } from "node:test";
import { requires } from "../helpers/requires.js";
import { testCniNetwork, type PodNetns, type TestCniNetwork } from "../helpers/cni.js";
import { errnoOf } from "../../src/base/errors.js";
import { NodeProcessRunner, runChecked } from "../../src/platform/process.js";
import { netnsRunDir } from "../../src/network/netns.js";
import { reservedAddresses } from "../../src/tools/cni-netns.js";

const runner = new NodeProcessRunner();

interface IpAddr {
  ifname: string;
  address?: string;
  operstate: string;
  master?: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}

async function ipJson(args: string[], netns?: string): Promise<IpAddr[]> {
  const full = netns === undefined ? ["-j", ...args] : ["-j", "-n", netns, ...args];
  // CAST: iproute2's JSON for `ip -j addr/link show`.
  return JSON.parse((await runChecked(runner, "ip", full)).stdout) as IpAddr[];
}

/** The veths enslaved to `bridge` (the host ends of the pods' eth0). */
async function bridgePorts(bridge: string): Promise<string[]> {
  const r = await runner.run("ip", ["-j", "link", "show", "master", bridge]);
  if (r.code !== 0) return [];
  return (JSON.parse(r.stdout) as IpAddr[]).map((l) => l.ifname);
}

async function namespaces(prefix: string): Promise<string[]> {
  try {
    return (await readdir(netnsRunDir)).filter((n) => n.startsWith(prefix));
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return [];
    throw e;
  }
}

describe("CNI helper (bridge, host-local, loopback)", { skip: requires("root", "netns"), timeout: 60_000 }, () => {
  const networks: TestCniNetwork[] = [];
  after(async () => {
    for (const n of networks) await n.remove();
  });

  it("ADD gives the pod eth0 with its address and lo up; the host reaches it through the bridge's gateway", async () => {
    const net = testCniNetwork("add");
    networks.push(net);

    const pod = await net.addPod("a");
    try {
      const inside = await ipJson(["addr", "show"], pod.name);
      const eth0 = inside.find((l) => l.ifname === "eth0");
      const lo = inside.find((l) => l.ifname === "lo");
      const bridge = (await ipJson(["addr", "show", "dev", net.bridge]))[0];
      const ping = await runner.run("busybox", ["ping", "-c", "2", "-W", "5", pod.ip]);

      assert.equal(pod.nsPath, `${netnsRunDir}/${pod.name}`);
      assert.equal(pod.gateway, net.gateway);
      assert.match(pod.ip, new RegExp(`^${net.gateway.replace(/\.1$/, "").replaceAll(".", "\\.")}\\.\\d+$`));
      assert.equal(eth0?.address, pod.mac, "eth0's MAC is the one in the CNI result");
      assert.deepEqual(
        eth0.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`),
        [`${pod.ip}/24`],
      );
      assert.deepEqual(
        lo?.addr_info.filter((a) => a.family === "inet").map((a) => a.local),
        ["127.0.0.1"],
      );
      assert.deepEqual(
        bridge?.addr_info.filter((a) => a.family === "inet").map((a) => a.local),
        [net.gateway],
      );
      assert.equal((await bridgePorts(net.bridge)).length, 1);
      assert.deepEqual(await reservedAddresses(net.dataDir), [pod.ip]);
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      assert.match(ping.stdout, /2 packets received/);
    } finally {
      await pod.release();
    }
  });

  it("two pods on one bridge reach each other", async () => {
    const net = testCniNetwork("two");
    networks.push(net);
    const a = await net.addPod("a");
    const b = await net.addPod("b");

    const ping = await runner.run("ip", ["netns", "exec", a.name, "busybox", "ping", "-c", "2", "-W", "5", b.ip]);
    await b.release();
    await a.release();

    assert.notEqual(a.ip, b.ip);
    assert.notEqual(a.mac, b.mac);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
  });

  it("DEL removes the veth, the reservation and the namespace; removing the network leaves nothing", async () => {
    const net = testCniNetwork("del");
    const pod: PodNetns = await net.addPod("a");
    const prefix = pod.name;

    await pod.release();
    await pod.release(); // idempotent
    const portsAfterDel = await bridgePorts(net.bridge);
    const reservedAfterDel = await reservedAddresses(net.dataDir);
    const nsAfterDel = await namespaces(prefix);
    await net.remove();

    assert.deepEqual(portsAfterDel, []);
    assert.deepEqual(reservedAfterDel, []);
    assert.deepEqual(nsAfterDel, []);
    assert.equal((await runner.run("ip", ["link", "show", net.bridge])).code !== 0, true, "bridge deleted");
    assert.deepEqual(await readdir(net.dataDir).catch((e: unknown) => [errnoOf(e)]), ["ENOENT"]);
  });

  it("DEL succeeds for a namespace whose eth0 something else already removed", async () => {
    const net = testCniNetwork("gone");
    networks.push(net);
    const pod = await net.addPod("a");

    await runChecked(runner, "ip", ["-n", pod.name, "link", "delete", "eth0"]);
    await pod.release();

    assert.deepEqual(await bridgePorts(net.bridge), []);
    assert.deepEqual(await reservedAddresses(net.dataDir), []);
    assert.deepEqual(await namespaces(pod.name), []);
  });
});
