// NICs in VMs cloned from a template (docs/factory.md#nics), with real parts only: `kata-ts factory init`
// boots a real template VM with one NIC on a tap in a throwaway netns, and two sandboxes, each in its own
// pod netns made by Debian's CNI bridge plugin, start at once as clones of it: each clone's QEMU opens
// the same tap name in its own netns, and the guest agent gives the template's NIC the pod's MAC,
// address and routes; a pod with more interfaces boots directly. One template, two clones and one direct
// boot: the VM boots are few on purpose.

import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ignoreErrno } from "../../src/base/errors.js";
import { templateNetnsName, templateNic } from "../../src/factory/template-plan.js";
import { netnsRunDir } from "../../src/network/netns.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { cniPluginsInstalled, testCniNetwork, type PodNetns, type TestCniNetwork } from "../helpers/cni.js";
import { leftovers, removeRunRoot } from "../helpers/cli.js";
import { requires } from "../helpers/requires.js";
import { fetchText, joinPod, linksAndQdiscs, waitForOutput } from "../helpers/pod-net.js";
import { makeWorld, vmTimeoutMs, type VmWorld } from "../helpers/vm-world.js";

const runner = new NodeProcessRunner();

/** Shows eth0 and the routes, serves HTTP on 8080 (from /dev/shm: the rootfs is read-only), pings the gateway. */
function serverScript(name: string, gateway: string): string[] {
  return [
    "sh",
    "-c",
    [
      "ip addr show eth0",
      "ip route",
      "mkdir -p /dev/shm/www",
      `echo hello-from-${name} > /dev/shm/www/index.html`,
      "httpd -p 8080 -h /dev/shm/www",
      `ping -c 2 -W 5 ${gateway} >/dev/null && echo GATEWAY-OK`,
      "echo READY",
      "exec sleep 600",
    ].join("; "),
  ];
}

async function netnsNames(): Promise<string[]> {
  return (await readdir(netnsRunDir).catch(ignoreErrno("ENOENT"))) ?? [];
}

describe(
  "VM factory: clones with the pod's NIC (real VMs, CNI bridge)",
  { skip: requires("root", "qemu", "image", "netns", "cni"), concurrency: false },
  () => {
    let work = "";
    let factoryDir = "";
    let templatePath = "";
    let net: TestCniNetwork | undefined;
    let w: VmWorld | undefined;
    const pods: PodNetns[] = [];
    /** Sandboxes a failed test may leave running: deleted before the template can be destroyed. */
    const sandboxes: string[] = [];

    before(async () => {
      assert.ok(cniPluginsInstalled(), "containernetworking-plugins is installed");
      work = await mkdtemp(path.join(tmpdir(), "kata-ts-factnet-"));
      factoryDir = `/run/kata-ts-it-factnet-${process.pid}`;
      templatePath = path.join(factoryDir, "template");
      await mkdir(factoryDir, { recursive: true, mode: 0o700 });
      net = testCniNetwork("factnet");
      w = await makeWorld(work, "w", {
        toml: `[factory]\nenable_template = true\ntemplate_path = "${templatePath}"\n`,
      });
    });

    after(async () => {
      if (w !== undefined) {
        for (const id of sandboxes) await w.piped(["delete", "--force", id]);
        const destroyed = await w.piped(["factory", "destroy"]);
        assert.equal(destroyed.code, 0, `factory destroy after the tests: ${destroyed.stderr}`);
        await removeRunRoot(w.root);
      }
      for (const p of pods) await p.release();
      await net?.remove();
      await rm(factoryDir, { recursive: true, force: true });
      await rm(work, { recursive: true, force: true });
    });

    it(
      "factory init gives the template one NIC, and removes the netns its tap was in",
      { timeout: vmTimeoutMs },
      async () => {
        assert.ok(w !== undefined);

        const init = await w.piped(["factory", "init"]);

        assert.equal(init.code, 0, init.stderr);
        const record = JSON.parse(await readFile(path.join(templatePath, "template.json"), "utf8")) as {
          nics?: unknown;
          taps?: unknown;
        };
        assert.deepEqual(record.nics, [templateNic]);
        assert.deepEqual(record.taps, [templateNic.tapName]);
        assert.ok(!(await netnsNames()).includes(templateNetnsName(templatePath)), "the template's netns is gone");
      },
    );

    it(
      "two clones at once, each in its own pod netns on the same tap name: each guest has its pod's MAC and IP, and the host reaches both",
      { timeout: 2 * vmTimeoutMs },
      async () => {
        assert.ok(net !== undefined && w !== undefined);
        const world = w;
        const gateway = net.gateway;
        const both = [await net.addPod("c1"), await net.addPod("c2")];
        pods.push(...both);
        const before = await Promise.all(both.map((p) => linksAndQdiscs(p.nsPath)));
        const ids = both.map((_, i) => `fnet${i + 1}${process.pid}`);
        sandboxes.push(...ids);

        const created = await Promise.all(
          both.map(async (pod, i) => {
            const id = ids[i] ?? "";
            return world.create(id, await world.bundle(id, serverScript(id, gateway), joinPod(pod)));
          }),
        );
        for (const c of created) assert.equal(c.code, 0, c.stderr);
        for (const id of ids) assert.equal((await world.piped(["start", id])).code, 0);
        const outs = await Promise.all(created.map((c) => waitForOutput(c.out, "READY", 180_000)));

        const log = await readFile(path.join(world.dir, "kata.log"), "utf8");
        for (const [i, pod] of both.entries()) {
          const id = ids[i] ?? "";
          const out = outs[i] ?? "";
          assert.match(
            log
              .split("\n")
              .filter((l) => l.includes(id))
              .join("\n"),
            /started from the VM template/,
            `${id} is a clone`,
          );
          assert.ok(out.includes(`inet ${pod.ip}/`), `${id}: eth0 has the pod IP ${pod.ip}:\n${out}`);
          assert.ok(out.toLowerCase().includes(`link/ether ${pod.mac.toLowerCase()}`), `${id}: the pod's MAC:\n${out}`);
          assert.ok(!out.includes(templateNic.mac), `${id}: the template's MAC is gone:\n${out}`);
          assert.ok(out.includes(`default via ${gateway}`), `${id}: the default route:\n${out}`);
          assert.ok(out.includes("GATEWAY-OK"), `${id}: the gateway answers:\n${out}`);
          assert.equal((await fetchText(`http://${pod.ip}:8080/`)).trim(), `hello-from-${id}`);
        }

        for (const id of ids) {
          const r = await world.piped(["delete", "--force", id]);
          assert.equal(r.code, 0, r.stderr);
        }
        assert.deepEqual(await leftovers(world.root), []);
        for (const [i, pod] of both.entries()) {
          assert.equal(await linksAndQdiscs(pod.nsPath), before[i], "no tap or qdisc is left in the joined netns");
        }
        for (const p of both) {
          await p.release();
          pods.splice(pods.indexOf(p), 1);
        }
      },
    );

    it(
      "a pod with more interfaces than the template's one NIC boots directly, with a warning, and gets them all",
      { timeout: vmTimeoutMs },
      async () => {
        assert.ok(net !== undefined && w !== undefined);
        const pod = await net.addPod("m");
        pods.push(pod);
        // A second pair in the pod's netns: two more veth endpoints, so three NICs.
        const added = await runner.run("ip", [
          "-n",
          pod.name,
          "link",
          "add",
          "kt0",
          "type",
          "veth",
          "peer",
          "name",
          "kt1",
        ]);
        assert.equal(added.code, 0, added.stderr);
        const id = `fnetm${process.pid}`;
        sandboxes.push(id);

        const r = await w.cli([
          "run",
          "--bundle",
          await w.bundle(id, ["sh", "-c", "ls /sys/class/net"], joinPod(pod)),
          id,
        ]);

        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(r.stdout.toString().split(/\s+/).filter(Boolean).sort(), ["eth0", "kt0", "kt1", "lo"]);
        const log = (await readFile(path.join(w.dir, "kata.log"), "utf8")).split("\n").filter((l) => l.includes(id));
        assert.match(
          log.join("\n"),
          /cannot use the VM template; booting directly.*NICs: the template has one, the sandbox 3/,
        );
        assert.deepEqual(await leftovers(w.root), []);
        await pod.release();
        pods.splice(pods.indexOf(pod), 1);
      },
    );
  },
);
