// Failure atomicity and deadlines on real VMs, through the OCI CLI: a create refused before any VM starts,
// a sandbox that fails after its VM booted, and guests that stop answering (QEMU stopped, agent frozen).
// Each ends with the leak check: no per-sandbox service, QEMU, mount, netns, state or mapping.

import assert from "node:assert/strict";
import { access, mkdtemp, readFile, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Spec } from "../../src/oci/spec.js";
import { NodeProcessRunner, processExists } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCliToFiles } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const vmTimeout = 240_000;

describe("failures and wedged guests (real VM)", { skip: requires("root", "qemu", "image", "netns") }, () => {
  let work = "";
  let n = 0;
  const roots: string[] = [];

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-fail-"));
  });

  after(async () => {
    for (const r of roots) await removeRunRoot(r);
    await rm(work, { recursive: true, force: true });
  });

  async function setup(toml: string, args: string[], edit: (s: Spec) => void = () => undefined) {
    const root = await makeRunRoot();
    roots.push(root);
    const dir = path.join(work, `t${++n}`);
    const bundle = await makeBusyboxBundle({ runner }, { dir: path.join(dir, "bundle"), args, edit });
    const config = path.join(dir, "configuration.toml");
    await writeFile(config, toml);
    const cli = (verb: string[], timeoutMs = vmTimeout) =>
      runCliToFiles(["--root", root, "--config", config, "--log", path.join(dir, "kata.log"), ...verb], dir, {
        env,
        timeoutMs,
      });
    return { root, dir, bundle, cli };
  }

  async function vmPidOf(root: string, sid: string): Promise<number> {
    const state: unknown = JSON.parse(await readFile(path.join(root, "sbs", sid, "state.json"), "utf8"));
    assert.ok(typeof state === "object" && state !== null && "vmPid" in state && typeof state.vmPid === "number");
    return state.vmPid;
  }

  it("refuses a bind source that does not exist before any VM starts, leaving nothing", async () => {
    // A "hypervisor" that only records that it ran: the create must fail before it is started.
    const marker = path.join(work, "hypervisor-ran");
    const fakeQemu = path.join(work, "record-qemu");
    await writeFile(fakeQemu, `#!/bin/sh\ntouch ${marker}\nexit 1\n`);
    await chmod(fakeQemu, 0o755);
    const t = await setup(`[hypervisor.qemu]\npath = "${fakeQemu}"\n`, ["true"], (s) => {
      s.mounts = [
        ...(s.mounts ?? []),
        { destination: "/data", type: "bind", source: "/nonexistent/kata-ts", options: ["rbind"] },
      ];
    });
    const id = `nosrc${process.pid}`;

    const r = await t.cli(["create", "--bundle", t.bundle, id]);

    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /source \/nonexistent\/kata-ts does not exist/);
    await assert.rejects(access(marker), /ENOENT/, "the hypervisor must not have been started");
    assert.deepEqual(await leftovers(t.root), []);
    assert.deepEqual(await netnsLeft([id]), []);
  });

  it("leaves nothing when a sandbox fails after its VM booted (a kernel module the guest lacks)", async () => {
    const t = await setup(`[agent.kata]\nkernel_modules = ["kata_ts_no_such_module"]\n`, ["true"]);
    const id = `late${process.pid}`;

    const r = await t.cli(["create", "--bundle", t.bundle, id]);

    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /kernel module kata_ts_no_such_module is not in the guest image/);
    assert.deepEqual(await leftovers(t.root), []);
    assert.deepEqual(await netnsLeft([id]), []);
    const list = await t.cli(["list", "--quiet"]);
    assert.equal(list.stdout.toString().trim(), "");
  });

  it("fails verbs within their deadlines when QEMU is stopped, and delete --force removes everything", async () => {
    const t = await setup(`[agent.kata]\nrequest_timeout_ms = 3000\n`, ["sleep", "1000"]);
    const id = `stopped${process.pid}`;
    assert.equal((await t.cli(["create", "--bundle", t.bundle, id])).code, 0);
    assert.equal((await t.cli(["start", id])).code, 0);
    const vmPid = await vmPidOf(t.root, id);
    process.kill(vmPid, "SIGSTOP");
    try {
      const ps = await t.cli(["ps", id], 120_000);

      assert.notEqual(ps.code, 0, "ps of a stopped guest must fail");
      assert.match(ps.stderr, new RegExp(`sandbox ${id}`));
      assert.match(ps.stderr, /delete --force/);

      const del = await t.cli(["delete", "--force", id], 120_000);

      assert.equal(del.code, 0, del.stderr);
      assert.equal(processExists(vmPid), false, "QEMU must be gone");
      assert.deepEqual(await leftovers(t.root), []);
      assert.deepEqual(await netnsLeft([id]), []);
    } finally {
      if (processExists(vmPid)) process.kill(vmPid, "SIGKILL");
    }
  });

  it("fails verbs within their deadlines when the guest agent is frozen, and delete --force removes everything", async () => {
    // The container shares the guest's pid namespace and stops the agent (the guest's only node process).
    const t = await setup(
      `[agent.kata]\nrequest_timeout_ms = 3000\n`,
      ["sh", "-c", "sleep 3; kill -STOP $(pidof node); sleep 1000"],
      (s) => {
        if (s.linux?.namespaces) s.linux.namespaces = s.linux.namespaces.filter((ns) => ns.type !== "pid");
      },
    );
    const id = `frozen${process.pid}`;
    assert.equal((await t.cli(["create", "--bundle", t.bundle, id])).code, 0);
    assert.equal((await t.cli(["start", id])).code, 0);
    const vmPid = await vmPidOf(t.root, id);
    await new Promise((r) => setTimeout(r, 5000));

    const kill = await t.cli(["kill", id, "TERM"], 120_000);

    assert.notEqual(kill.code, 0, "a frozen agent cannot deliver the signal");
    assert.match(kill.stderr, new RegExp(`sandbox ${id}`));

    const del = await t.cli(["delete", "--force", id], 120_000);

    assert.equal(del.code, 0, del.stderr);
    assert.equal(processExists(vmPid), false, "QEMU must be gone");
    assert.deepEqual(await leftovers(t.root), []);
    assert.deepEqual(await netnsLeft([id]), []);
  });
});
