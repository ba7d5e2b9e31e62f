// Pod networking on a real VM, host side made by hand (feasibility §8): a netns with a veth (the pod's
// eth0, its peer on the host), a tap, and u32 + mirred redirects both ways; QEMU runs in the netns with a
// NIC on the tap carrying the veth's MAC. The agent then gets the pod's interface, routes and ARP
// neighbour, and a container in the VM pings the host end of the veth.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { deadline } from "../../src/base/async.js";
import { Code, describeError, isKataError } from "../../src/base/errors.js";
import { nullLogger } from "../../src/base/log.js";
import type { Hypervisor, VmNic } from "../../src/hypervisor/hypervisor.js";
import { QemuHypervisor } from "../../src/hypervisor/qemu/qemu.js";
import { toolsDiskSerial } from "../../src/image/guest-init.js";
import { readGuestImage } from "../../src/image/guest-image.js";
import { loadBundle } from "../../src/oci/bundle.js";
import { CommandMounter } from "../../src/platform/mount.js";
import { NodeProcessRunner, runChecked } from "../../src/platform/process.js";
import { RealHostProbe } from "../../src/platform/probe.js";
import { HelperShareBinder } from "../../src/platform/share-binder.js";
import { IPFamily } from "../../src/protocol/gen/types_pb.js";
import { ociToGrpcSpec } from "../../src/protocol/oci-spec/convert.js";
import { guestSpec } from "../../src/sandbox/guest-spec.js";
import { Sandbox } from "../../src/sandbox/sandbox.js";
import { readSelfMountInfo } from "../../src/storage/shared-dir.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { requires, testImageDir } from "../helpers/requires.js";
import { eventually } from "../helpers/vm-world.js";

const runner = new NodeProcessRunner();
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const x = 100 + (process.pid % 100);
const ns = `ktgnet${process.pid}`;
const hostVeth = `ktg${process.pid % 100000}h`;
const hostIp = `10.200.${x}.1`;
const podIp = `10.200.${x}.2`;
const hostIp6 = `fd00:200:${x}::1`;
const podIp6 = `fd00:200:${x}::2`;

async function sh(cmd: string, args: string[]): Promise<string> {
  return (await runChecked(runner, cmd, args, { signal: AbortSignal.timeout(30_000) })).stdout;
}

const inNs = (cmd: string, ...args: string[]): Promise<string> => sh("ip", ["netns", "exec", ns, cmd, ...args]);

describe(
  "guest network (real VM in a netns, tap + tc redirect)",
  { skip: requires("root", "qemu", "image", "netns") },
  () => {
    let work = "";
    let podMac = "";

    before(async () => {
      work = await mkdtemp(path.join(tmpdir(), "kata-ts-gnet-"));
      await sh("ip", ["netns", "add", ns]);
      await sh("ip", ["link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
      await sh("ip", ["addr", "add", `${hostIp}/24`, "dev", hostVeth]);
      await sh("ip", ["addr", "add", `${hostIp6}/64`, "dev", hostVeth, "nodad"]);
      await sh("ip", ["link", "set", hostVeth, "up"]);
      await inNs("ip", "addr", "add", `${podIp}/24`, "dev", "eth0");
      await inNs("ip", "link", "set", "eth0", "up");
      await inNs("ip", "tuntap", "add", "dev", "tap0_kata", "mode", "tap");
      await inNs("ip", "link", "set", "tap0_kata", "up");
      for (const [from, to] of [
        ["eth0", "tap0_kata"],
        ["tap0_kata", "eth0"],
      ] as const) {
        await inNs("tc", "qdisc", "add", "dev", from, "ingress");
        await inNs(
          ...([
            "tc",
            "filter",
            "add",
            "dev",
            from,
            "parent",
            "ffff:",
            "protocol",
            "all",
            "u32",
            "match",
            "u8",
            "0",
            "0",
          ] as const),
          ...(["action", "mirred", "egress", "redirect", "dev", to] as const),
        );
      }
      const link: unknown = JSON.parse(await inNs("ip", "-j", "link", "show", "eth0"));
      // CAST: `ip -j link show DEV` prints a one-element array of link objects.
      podMac = (link as { address: string }[])[0]?.address ?? "";
      assert.match(podMac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    });

    after(async () => {
      await sh("ip", ["netns", "del", ns]).catch((e: unknown) => {
        process.stderr.write(`cleanup: ip netns del ${ns}: ${String(e)}\n`);
      });
      // Deleting the netns destroys the veth pair with it, but the kernel tears a namespace down in a
      // work queue after its last user is gone: the host end may outlive `ip netns del` briefly (a CI
      // run saw it), so the leak check waits a bounded while for it.
      const gone = await eventually(async () => {
        const left = await sh("ip", ["-o", "link", "show"]);
        return !left.includes(`${hostVeth}@`) && !left.includes(`${hostVeth}:`);
      }, 10_000);
      assert.ok(gone, `${hostVeth} left on the host`);
      assert.ok(!(await sh("ip", ["netns", "list"])).includes(ns), `netns ${ns} left`);
      await rm(work, { recursive: true, force: true });
    });

    it(
      "configures eth0, routes and ARP in the guest; a container pings the host end; lo is up",
      { timeout: 300_000 },
      async () => {
        const image = await readGuestImage(testImageDir);
        assert.ok(image, `no guest image in ${testImageDir}`);
        const probe = new RealHostProbe(process.env["PATH"] ?? "");
        const qemu = new QemuHypervisor(
          { runner, probe, logger: nullLogger },
          { binary: "qemu-system-x86_64", confine: path.join(repo, "dist", "native", "kata-ts-confine") },
        );
        const nics: VmNic[] = [{ tapName: "tap0_kata", mac: podMac }];
        // The sandbox layer does not plan NICs yet: give its VM ours.
        const hypervisor: Hypervisor = {
          name: qemu.name,
          startVm: (config, signal) => qemu.startVm({ ...config, nics }, signal),
        };
        const boot = deadline(240_000);
        const sandbox = await Sandbox.create(
          {
            hypervisor,
            mounter: new CommandMounter(runner),
            binder: new HelperShareBinder(runner, path.join(repo, "dist", "native", "kata-ts-mount")),
            readMountInfo: readSelfMountInfo,
            logger: nullLogger,
            now: () => performance.now(),
          },
          {
            id: "gnet",
            runDir: path.join(work, "run"),
            hostname: "pod-" + "h".repeat(70),
            netnsPath: `/var/run/netns/${ns}`,
            vm: {
              machineType: "microvm",
              vcpus: 1,
              memoryMiB: 1024,
              kernelPath: image.kernelPath,
              initrdPath: image.initrdPath,
              readonlyDisks: [{ path: image.toolsDiskPath, serial: toolsDiskSerial }],
              kernelParams: ["panic=1"],
              bootTimeoutMs: 200_000,
              msize9p: 262144,
            },
          },
          boot.signal,
        );
        try {
          const agent = sandbox.agent;
          const setIface = () =>
            agent.updateInterface({
              interface: {
                name: "eth0",
                hwAddr: podMac.toUpperCase(),
                mtu: 1500n,
                IPAddresses: [
                  { family: IPFamily.v4, address: podIp, mask: "24" },
                  { family: IPFamily.v6, address: podIp6, mask: "64" },
                ],
              },
            });
          const setRoutes = () =>
            agent.updateRoutes({
              routes: {
                Routes: [
                  { dest: "default", gateway: hostIp, device: "eth0" },
                  { dest: `10.200.${x}.0/24`, device: "eth0", source: podIp, scope: 253 },
                  { dest: "::/0", gateway: hostIp6, device: "eth0", family: IPFamily.v6 },
                ],
              },
            });
          const t0 = performance.now();
          const iface = await setIface();
          const t1 = performance.now();
          const routes = await setRoutes();
          const t2 = performance.now();
          // Again, warm (the agent's code compiled): the same request gives the same result.
          const again = await setIface();
          const t3 = performance.now();
          const routesAgain = await setRoutes();
          const t4 = performance.now();
          assert.deepEqual(again, iface);
          assert.deepEqual(routesAgain, routes);
          await agent.addARPNeighbors({
            neighbors: {
              ARPNeighbors: [{ toIPAddress: { address: hostIp }, device: "eth0", lladdr: await hostMac() }],
            },
          });

          assert.equal(iface.name, "eth0");
          assert.equal(iface.hwAddr, podMac);
          // The kernel adds a link-local IPv6 address when the link comes up.
          assert.deepEqual(
            iface.IPAddresses.filter((a) => !a.address.startsWith("fe80:")).map((a) => `${a.address}/${a.mask}`),
            [`${podIp}/24`, `${podIp6}/64`],
          );
          assert.ok(routes.Routes.some((r) => r.dest === "default" && r.gateway === hostIp && r.device === "eth0"));
          assert.ok(
            routes.Routes.some((r) => r.dest === "default" && r.gateway === hostIp6 && r.family === IPFamily.v6),
          );

          const listed = (await agent.listInterfaces({})).Interfaces;
          const eth0 = listed.find((i) => i.name === "eth0");
          assert.ok(eth0, `no eth0 in ${JSON.stringify(listed.map((i) => i.name))}`);
          assert.ok(eth0.IPAddresses.some((a) => a.address === podIp && a.mask === "24"));
          const lo = listed.find((i) => i.name === "lo");
          assert.ok(lo);
          assert.equal(lo.rawFlags & 1, 1, "lo is up (IFF_UP)");
          assert.ok(lo.IPAddresses.some((a) => a.address === "127.0.0.1"));
          assert.ok(lo.IPAddresses.some((a) => a.address === "::1"));

          // Over the wire: a MAC no NIC has is NOT_FOUND naming it (after the agent looked for ~3 s), bad
          // input INVALID_ARGUMENT naming the field.
          await assert.rejects(
            agent.updateInterface({ interface: { name: "eth1", hwAddr: "02:00:00:00:00:99" } }),
            (e) =>
              isKataError(e, Code.NotFound) &&
              describeError(e).includes("no network interface with MAC 02:00:00:00:00:99"),
          );
          await assert.rejects(
            agent.updateRoutes({ routes: { Routes: [{ dest: "10.0.0.0/33", device: "eth0" }] } }),
            (e) => isKataError(e, Code.InvalidArgument) && describeError(e).includes("routes[0].dest"),
          );

          // The VM answers the host from eth0 through the redirects.
          const ping = await sh("busybox", ["ping", "-c", "3", "-W", "5", podIp]);
          assert.match(ping, / 0% packet loss/);
          // IPv6 too, at once: the agent turned DAD off, so the address is not tentative.
          const ping6 = await sh("busybox", ["ping6", "-c", "3", "-W", "5", podIp6]);
          assert.match(ping6, / 0% packet loss/);

          // A container: shares the guest's network namespace, so it has eth0 and lo.
          const out = await runContainer(sandbox, work, [
            "sh",
            "-c",
            `exec 2>&1; ping -c 3 -W 5 ${hostIp} && ip -o addr show dev eth0 && wget -q -O /dev/null http://127.0.0.1:1/ ; hostname`,
          ]);
          assert.match(out, / 0% packet loss/);
          assert.match(out, new RegExp(`inet ${podIp.replaceAll(".", "\\.")}/24`));
          assert.match(out, /Connection refused|can't connect/i, "127.0.0.1 answers (refuses), so lo is up");
          assert.match(out, new RegExp(`^pod-h{60}$`, "m"), "hostname cut to 64 bytes");

          // What the agent's one spawn per call costs: ListRoutes is one shell running two `ip`, removing an
          // unknown container spawns nothing.
          const rpcMs = await meanMs(() => agent.removeContainer({ containerId: "nosuch" }).then(() => undefined));
          const listRoutesMs = await meanMs(() => agent.listRoutes({}).then(() => undefined));
          process.stdout.write(
            `# guest network timings: UpdateInterface ${(t1 - t0).toFixed(0)} ms (again ${(t3 - t2).toFixed(0)} ms), ` +
              `UpdateRoutes ${(t2 - t1).toFixed(0)} ms (again ${(t4 - t3).toFixed(0)} ms), ` +
              `empty RPC ${rpcMs.toFixed(1)} ms, ListRoutes (one spawn, two ip) ${listRoutesMs.toFixed(1)} ms\n`,
          );
          process.stdout.write(
            (await sandbox.vm.consoleTail(400))
              .split("\n")
              .filter((l) => /interface updated|routes updated/.test(l))
              .map((l) => `# agent: ${l}\n`)
              .join(""),
          );
        } finally {
          boot.clear();
          await sandbox.destroy();
        }
      },
    );
  },
);

async function hostMac(): Promise<string> {
  return (await readFile(`/sys/class/net/${hostVeth}/address`, "utf8")).trim();
}

async function meanMs(fn: () => Promise<void>, n = 10): Promise<number> {
  await fn();
  const t = performance.now();
  for (let i = 0; i < n; i++) await fn();
  return (performance.now() - t) / n;
}

/** Runs `args` in a busybox container of the sandbox and returns its stdout once it exited. */
async function runContainer(sandbox: Sandbox, work: string, args: string[]): Promise<string> {
  const dir = await makeBusyboxBundle(
    { runner },
    {
      dir: path.join(work, "ctr"),
      args,
      edit: (spec) => {
        // The guest's UTS namespace, so `hostname` shows the VM's.
        delete spec.hostname;
        if (spec.linux !== undefined)
          spec.linux.namespaces = (spec.linux.namespaces ?? []).filter((n) => n.type !== "uts");
        // busybox ping opens a raw socket.
        const caps = spec.process?.capabilities;
        if (caps !== undefined) {
          for (const set of ["bounding", "effective", "permitted"] as const)
            caps[set] = [...(caps[set] ?? []), "CAP_NET_RAW"];
        }
      },
    },
  );
  const bundle = await loadBundle(dir);
  const containerId = "c1";
  await sandbox.createContainer(
    {
      containerId,
      rootfs: bundle.rootfs,
      storage: { mounts: [], storages: [], binds: [], dirs: [] },
      spec: ociToGrpcSpec(guestSpec({ containerId, spec: bundle.spec })),
    },
    AbortSignal.timeout(120_000),
  );
  try {
    await sandbox.agent.startContainer({ containerId });
    let out = "";
    for (;;) {
      const chunk = await sandbox.agent.readStdout({ containerId, execId: "", len: 0 }, { timeoutMs: 60_000 });
      // An empty chunk is the end of the stream.
      if (chunk.data.length === 0) break;
      out += Buffer.from(chunk.data).toString("utf8");
    }
    const status = (await sandbox.agent.waitProcess({ containerId, execId: "" }, { timeoutMs: 60_000 })).status;
    assert.equal(status, 0, `container exited ${status}: ${out}`);
    return out;
  } finally {
    await sandbox.removeContainer(containerId);
  }
}
