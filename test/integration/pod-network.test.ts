// Pod networking end to end, with real parts only: a pod network namespace made by Debian's CNI bridge
// plugin (as containerd's CRI plugin makes it), kata-ts joining it through config.json, QEMU's NIC on a
// tap mirrored to the CNI veth by tc, and the guest agent giving the NIC the pod's address and routes.
// The containers are busybox in real VMs.

import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { cniPluginsInstalled, testCniNetwork, type PodNetns, type TestCniNetwork } from "../helpers/cni.js";
import { leftovers, removeRunRoot } from "../helpers/cli.js";
import { requires } from "../helpers/requires.js";
import { fetchText, joinPod, waitForOutput } from "../helpers/pod-net.js";
import { makeWorld, vmTimeoutMs, type VmWorld } from "../helpers/vm-world.js";

const runner = new NodeProcessRunner();

/** What `ip`/`tc` show of a namespace: the taps and filters kata-ts adds must all be gone after delete. */
async function snapshot(nsPath: string): Promise<string> {
  const run = async (file: string, args: string[]): Promise<string> => {
    const r = await runner.run("nsenter", [`--net=${nsPath}`, "--", file, ...args]);
    assert.equal(r.code, 0, `${file} ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const links = (JSON.parse(await run("ip", ["-j", "link", "show"])) as { ifname: string; address?: string }[])
    .map((l) => `${l.ifname} ${l.address ?? ""}`)
    .sort();
  const addrs = (
    JSON.parse(await run("ip", ["-j", "addr", "show"])) as {
      ifname: string;
      addr_info: { local: string; prefixlen: number }[];
    }[]
  )
    .flatMap((l) => l.addr_info.map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`))
    .sort();
  const routes = await run("ip", ["route", "show"]);
  const qdiscs = await run("tc", ["qdisc", "show"]);
  const filters = await run("tc", ["filter", "show", "dev", "eth0", "ingress"]);
  return [...links, ...addrs, routes, qdiscs, filters].join("\n");
}

/** A shell script: show the network, serve HTTP on 8080 (from /dev/shm: the rootfs is read-only), check loopback, then run `then`. */
function serverScript(name: string, then: string): string[] {
  return [
    "sh",
    "-c",
    [
      "ip addr show eth0",
      "ip addr show lo",
      "mkdir -p /dev/shm/www",
      `echo hello-from-${name} > /dev/shm/www/index.html`,
      "httpd -p 8080 -h /dev/shm/www",
      "wget -q -O- http://127.0.0.1:8080/ && echo LOOPBACK-OK",
      then,
      "echo READY",
      "exec sleep 600",
    ].join("; "),
  ];
}

describe("pod networking (real VM, CNI bridge)", { skip: requires("root", "qemu", "image", "netns", "cni") }, () => {
  let work = "";
  let net: TestCniNetwork | undefined;
  const pods: PodNetns[] = [];
  const worlds: VmWorld[] = [];

  before(async () => {
    assert.ok(cniPluginsInstalled(), "containernetworking-plugins is installed");
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-podnet-"));
    net = testCniNetwork("podnet");
  });

  after(async () => {
    for (const w of worlds) await removeRunRoot(w.root);
    // Release is idempotent: pods a test already released are released again at no cost.
    for (const p of pods) await p.release();
    await net?.remove();
    await rm(work, { recursive: true, force: true });
  });

  it(
    "gives the container the pod IP and MAC from CNI, reaches the gateway, serves the host by the pod IP, and leaves the joined netns as CNI made it",
    { timeout: vmTimeoutMs },
    async () => {
      assert.ok(net !== undefined);
      const pod = await net.addPod("a");
      pods.push(pod);
      const before = await snapshot(pod.nsPath);
      const w = await makeWorld(work, "one");
      worlds.push(w);
      const id = `net1${process.pid}`;
      const bundle = await w.bundle(
        "bundle",
        serverScript(id, `ping -c 3 -W 5 ${net.gateway} && echo GATEWAY-OK`),
        joinPod(pod),
      );

      const created = await w.create(id, bundle);
      assert.equal(created.code, 0, created.stderr);
      const started = await w.piped(["start", id]);
      assert.equal(started.code, 0, started.stderr);
      const out = await waitForOutput(created.out, "READY");

      assert.ok(out.includes(`inet ${pod.ip}/`), `eth0 has the pod IP ${pod.ip}:\n${out}`);
      assert.ok(out.toLowerCase().includes(pod.mac.toLowerCase()), `eth0 has the CNI MAC ${pod.mac}:\n${out}`);
      assert.ok(out.includes("inet 127.0.0.1/8"), `lo is up with 127.0.0.1:\n${out}`);
      assert.ok(out.includes("LOOPBACK-OK"), `a server on localhost answers:\n${out}`);
      assert.ok(out.includes("GATEWAY-OK"), `the bridge's gateway answers pings:\n${out}`);
      assert.equal((await fetchText(`http://${pod.ip}:8080/`)).trim(), `hello-from-${id}`);

      const deleted = await w.piped(["delete", "--force", id]);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.equal(await snapshot(pod.nsPath), before, "the joined netns is left exactly as CNI made it");
      assert.deepEqual(await leftovers(w.root), []);
      await pod.release();
      pods.splice(pods.indexOf(pod), 1);
    },
  );

  it("connects two pods on one bridge, each in its own VM", { timeout: 2 * vmTimeoutMs }, async () => {
    assert.ok(net !== undefined);
    const a = await net.addPod("b1");
    const b = await net.addPod("b2");
    pods.push(a, b);
    const w = await makeWorld(work, "two");
    worlds.push(w);
    const idA = `neta${process.pid}`;
    const idB = `netb${process.pid}`;
    const createdA = await w.create(idA, await w.bundle("a", serverScript(idA, "true"), joinPod(a)));
    assert.equal(createdA.code, 0, createdA.stderr);
    assert.equal((await w.piped(["start", idA])).code, 0);
    await waitForOutput(createdA.out, "READY");

    const createdB = await w.create(
      idB,
      await w.bundle("b", serverScript(idB, `wget -q -O- http://${a.ip}:8080/ && echo PEER-OK`), joinPod(b)),
    );
    assert.equal(createdB.code, 0, createdB.stderr);
    assert.equal((await w.piped(["start", idB])).code, 0);
    const outB = await waitForOutput(createdB.out, "READY");

    assert.ok(outB.includes(`hello-from-${idA}`) && outB.includes("PEER-OK"), `pod b reaches pod a:\n${outB}`);
    for (const id of [idA, idB]) {
      const r = await w.piped(["delete", "--force", id]);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.deepEqual(await leftovers(w.root), []);
    for (const p of [a, b]) {
      await p.release();
      pods.splice(pods.indexOf(p), 1);
    }
  });

  it("refuses a netns path that does not exist, or is not a network namespace, naming it, leaving nothing", async () => {
    const w = await makeWorld(work, "badns");
    worlds.push(w);
    const notNs = path.join(work, "plain-file");
    await writeFile(notNs, "");
    for (const [i, nsPath, expected] of [
      [
        1,
        "/var/run/netns/kata-ts-no-such-netns",
        /network namespace \/var\/run\/netns\/kata-ts-no-such-netns does not exist/,
      ],
      [2, notNs, new RegExp(`${notNs} is not a namespace file`)],
      [3, "/proc/self/ns/uts", /\/proc\/self\/ns\/uts is not a network namespace/],
    ] as const) {
      const id = `badns${i}${process.pid}`;
      const bundle = await w.bundle(`b${i}`, ["true"], (s) => {
        const namespaces = (s.linux?.namespaces ?? []).filter((n) => n.type !== "network");
        s.linux = { ...s.linux, namespaces: [...namespaces, { type: "network", path: nsPath }] };
      });
      const r = await w.create(id, bundle);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, expected);
      assert.deepEqual(await leftovers(w.root), []);
    }
  });

  it(
    "fails the create when QEMU cannot open the pod's tap, naming it, and leaves the joined netns as CNI made it",
    { timeout: vmTimeoutMs },
    async () => {
      assert.ok(net !== undefined);
      const pod = await net.addPod("busy");
      pods.push(pod);
      const before = await snapshot(pod.nsPath);
      // A "QEMU" that attaches to tap0_kata first and keeps it while it execs the real one: a tap takes
      // one user, so QEMU's own TUNSETIFF fails with EBUSY, as with a tap some other process holds.
      const wrapper = path.join(work, "qemu-tap-busy");
      await writeFile(
        wrapper,
        [
          "#!/usr/bin/python3",
          "import fcntl, os, struct, sys",
          'fd = os.open("/dev/net/tun", os.O_RDWR)',
          'fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"tap0_kata", 0x0002 | 0x1000))',
          "os.set_inheritable(fd, True)",
          'os.execv("/usr/bin/qemu-system-x86_64", ["qemu-system-x86_64"] + sys.argv[1:])',
          "",
        ].join("\n"),
      );
      await chmod(wrapper, 0o755);
      const w = await makeWorld(work, "busytap", { toml: `[hypervisor.qemu]\npath = "${wrapper}"\n` });
      worlds.push(w);
      const id = `busy${process.pid}`;

      const r = await w.create(id, await w.bundle("bundle", ["true"], joinPod(pod)));

      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /tap0_kata/);
      assert.match(r.stderr, /busy/i);
      assert.deepEqual(await leftovers(w.root), []);
      assert.equal(await snapshot(pod.nsPath), before, "no tap, qdisc or filter is left in the joined netns");
    },
  );
});
