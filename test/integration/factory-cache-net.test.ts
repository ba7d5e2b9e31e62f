// NICs in cached VMs (docs/factory.md#nics-in-cached-vms), with real parts only: `kata-ts factory init`
// with vm_cache_number = 1 boots a real VM with one NIC on a tap in a netns of its own; a sandbox in a pod
// netns made by Debian's CNI bridge plugin takes it over, moves that tap into the pod's netns, and its
// guest gets the pod's MAC, address and routes. A second cached VM whose tap is deleted from outside
// fails its sandbox's create, leaving nothing. Then the server is killed -9 with its third VM booting,
// and `factory destroy` removes that VM's netns too. Three VM boots in all.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { delay } from "../../src/base/async.js";
import { ignoreErrno } from "../../src/base/errors.js";
import { cacheNetnsPrefix } from "../../src/factory/cache-net-plan.js";
import { templateNic } from "../../src/factory/template-plan.js";
import { netnsRunDir } from "../../src/network/netns.js";
import { NodeProcessRunner, processExists } from "../../src/platform/process.js";
import { cniPluginsInstalled, testCniNetwork, type PodNetns, type TestCniNetwork } from "../helpers/cni.js";
import { cliPath, leftovers, makeRunRoot, removeRunRoot } from "../helpers/cli.js";
import { fetchText, joinPod, linksAndQdiscs, waitForOutput } from "../helpers/pod-net.js";
import { requires } from "../helpers/requires.js";
import { makeWorld, vmEnv, vmTimeoutMs, type VmWorld } from "../helpers/vm-world.js";

const runner = new NodeProcessRunner();

describe(
  "VM cache: a cached VM serves a pod with a network (real VMs, CNI bridge)",
  { skip: requires("root", "qemu", "image", "netns", "cni"), concurrency: false },
  () => {
    let work = "";
    let root = "";
    let cacheDir = "";
    let net: TestCniNetwork | undefined;
    let pod: PodNetns | undefined;
    let w: VmWorld | undefined;
    let server: { child: ChildProcess; out: () => string; exited: Promise<number | null> } | undefined;
    const id = `cnet${process.pid}`;

    /** This cache's VMs' netns names (the prefix is the cache's: other helpers' caches never match). */
    async function cacheNetns(): Promise<string[]> {
      const names = (await readdir(netnsRunDir).catch(ignoreErrno("ENOENT"))) ?? [];
      return names.filter((n) => n.startsWith(cacheNetnsPrefix(cacheDir))).sort();
    }

    async function waitFor<T>(probe: () => Promise<T | undefined>, what: string, ms = 180_000): Promise<T> {
      const until = Date.now() + ms;
      for (;;) {
        const v = await probe();
        if (v !== undefined) return v;
        if (server !== undefined && server.child.exitCode !== null) assert.fail(`the server exited: ${server.out()}`);
        if (Date.now() > until) {
          // The server's own account (boots that failed, and why) is in the log, not on its stdout.
          const log =
            w === undefined
              ? ""
              : ((await readFile(path.join(w.dir, "kata.log"), "utf8").catch(ignoreErrno("ENOENT"))) ?? "");
          const lines = log.split("\n").filter((l) => l.includes("component=vm-cache"));
          assert.fail(`timed out waiting for ${what}:\n${lines.slice(-15).join("\n")}`);
        }
        await delay(500);
      }
    }

    before(async () => {
      assert.ok(cniPluginsInstalled(), "containernetworking-plugins is installed");
      work = await mkdtemp(path.join(tmpdir(), "kata-ts-cachenet-"));
      // The cache's directory must be on --root's file system: the VM's directories are renamed into it.
      root = await makeRunRoot();
      const endpoint = path.join(root, "cache.sock");
      cacheDir = `${endpoint}.d`;
      net = testCniNetwork("cachenet");
      w = await makeWorld(work, "w", {
        root,
        toml: `[factory]\nvm_cache_number = 1\nvm_cache_endpoint = "${endpoint}"\n`,
      });
      const global = ["--root", root, "--config", w.config, "--log", path.join(w.dir, "kata.log")];
      const child = spawn(process.execPath, [cliPath, ...global, "factory", "init"], {
        env: vmEnv,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once("close", resolve));
      server = { child, out: () => out, exited };
    });

    after(async () => {
      server?.child.kill("SIGKILL");
      await server?.exited;
      if (w !== undefined) {
        await w.piped(["delete", "--force", id]);
        const destroyed = await w.piped(["factory", "destroy"]);
        assert.equal(destroyed.code, 0, `factory destroy after the tests: ${destroyed.stderr}`);
        await removeRunRoot(root);
      }
      await pod?.release();
      await net?.remove();
      await rm(work, { recursive: true, force: true });
    });

    it(
      "the sandbox takes the cached VM and its tap: the guest has the pod's MAC and IP, the host reaches it, and delete leaves the pod netns as CNI made it",
      { timeout: 2 * vmTimeoutMs },
      async () => {
        assert.ok(net !== undefined && w !== undefined);
        const world = w;
        await waitFor(async () => {
          const s = (await world.piped(["factory", "status"])).stdout.toString();
          return s.includes("1 ready)") ? s : undefined;
        }, "a ready cached VM");
        assert.deepEqual(await cacheNetns(), [`${cacheNetnsPrefix(cacheDir)}cache-1`], "the cached VM's own netns");
        pod = await net.addPod("p");
        const nsBefore = await linksAndQdiscs(pod.nsPath);
        const script = [
          "ip addr show eth0",
          "ip route",
          "mkdir -p /dev/shm/www",
          `echo hello-from-${id} > /dev/shm/www/index.html`,
          "httpd -p 8080 -h /dev/shm/www",
          `ping -c 2 -W 5 ${net.gateway} >/dev/null && echo GATEWAY-OK`,
          "echo READY",
          "exec sleep 600",
        ].join("; ");

        const created = await world.create(id, await world.bundle(id, ["sh", "-c", script], joinPod(pod)));
        assert.equal(created.code, 0, created.stderr);
        assert.equal((await world.piped(["start", id])).code, 0);
        const out = await waitForOutput(created.out, "READY", 180_000);

        const log = (await readFile(path.join(world.dir, "kata.log"), "utf8"))
          .split("\n")
          .filter((l) => l.includes(id))
          .join("\n");
        assert.match(log, /the cached VM's tap moved into the pod's netns.*vm=cache-1/);
        assert.match(log, /took a VM from the VM cache.*vm=cache-1/);
        assert.ok(out.includes(`inet ${pod.ip}/`), `eth0 has the pod IP ${pod.ip}:\n${out}`);
        assert.ok(out.toLowerCase().includes(`link/ether ${pod.mac.toLowerCase()}`), `the pod's MAC:\n${out}`);
        assert.ok(!out.includes(templateNic.mac), `the cached VM's MAC is gone:\n${out}`);
        assert.ok(out.includes(`default via ${net.gateway}`), `the default route:\n${out}`);
        assert.ok(out.includes("GATEWAY-OK"), `the gateway answers:\n${out}`);
        assert.equal((await fetchText(`http://${pod.ip}:8080/`)).trim(), `hello-from-${id}`);
        assert.ok(
          !(await cacheNetns()).includes(`${cacheNetnsPrefix(cacheDir)}cache-1`),
          "cache-1's netns name is gone",
        );

        const r = await world.piped(["delete", "--force", id]);
        assert.equal(r.code, 0, r.stderr);
        // The server's own VMs (the refill) are under --root too: only the sandbox's pieces count here.
        const found = (await leftovers(root)).filter(
          (f) => !f.startsWith("qemu process ") && !f.startsWith(`mount ${cacheDir}/`),
        );
        assert.deepEqual(found, []);
        assert.equal(await linksAndQdiscs(pod.nsPath), nsBefore, "no tap or qdisc is left in the pod netns");
      },
    );

    it(
      "a cached VM whose tap cannot be moved: the create fails naming the command, and leaves no QEMU, tap, qdisc or netns",
      { timeout: 2 * vmTimeoutMs },
      async () => {
        assert.ok(net !== undefined && w !== undefined);
        const world = w;
        const status = await waitFor(async () => {
          const s = (await world.piped(["factory", "status"])).stdout.toString();
          return s.includes("1 ready)") ? s : undefined;
        }, "the refilled cached VM");
        const vmPid = Number(/VM pid = (\d+)/.exec(status)?.[1]);
        const vmNs = `${cacheNetnsPrefix(cacheDir)}cache-2`;
        // The fault, from outside: the tap the sandbox would move is gone (QEMU keeps running without it).
        const del = await runner.run("ip", ["-n", vmNs, "link", "del", "tap0_kata"]);
        assert.equal(del.code, 0, del.stderr);
        const faulty = await net.addPod("f");
        const nsBefore = await linksAndQdiscs(faulty.nsPath);
        const fid = `cnetf${process.pid}`;

        const r = await world.cli(["run", "--bundle", await world.bundle(fid, ["true"], joinPod(faulty)), fid]);

        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /take over cached VM cache-2/);
        assert.match(r.stderr, /ip link set tap0_kata netns \S+ \(interface tap0_kata\)/);
        await waitFor(
          () => Promise.resolve(processExists(vmPid) ? undefined : true),
          "the cached VM's QEMU to exit",
          30_000,
        );
        await waitFor(
          async () => ((await cacheNetns()).includes(vmNs) ? undefined : true),
          "cache-2's netns to go",
          30_000,
        );
        const found = (await leftovers(root)).filter(
          (f) => !f.startsWith("qemu process ") && !f.startsWith(`mount ${cacheDir}/`),
        );
        assert.deepEqual(found, []);
        assert.equal(await linksAndQdiscs(faulty.nsPath), nsBefore, "no tap or qdisc is left in the pod netns");
        await faulty.release();
      },
    );

    it(
      "factory destroy after the server was killed -9 removes its VMs' netns with everything else",
      { timeout: vmTimeoutMs },
      async () => {
        assert.ok(server !== undefined && w !== undefined);
        // The refill: its netns is made before its QEMU starts.
        await waitFor(async () => ((await cacheNetns()).length > 0 ? true : undefined), "the refill's netns");
        const qemus = (await leftovers(root)).filter((f) => f.startsWith("qemu process "));

        server.child.kill("SIGKILL");
        await server.exited;
        server = undefined;
        const destroyed = await w.piped(["factory", "destroy"]);

        assert.equal(destroyed.code, 0, destroyed.stderr);
        assert.deepEqual(await cacheNetns(), []);
        // The guard kills QEMU once its owner's lifeline closes.
        await waitFor(async () => ((await leftovers(root)).length === 0 ? true : undefined), "nothing left", 30_000);
        for (const q of qemus) {
          const pid = Number(/(\d+)/.exec(q)?.[1]);
          assert.ok(!processExists(pid), `${q} exited`);
        }
      },
    );
  },
);
