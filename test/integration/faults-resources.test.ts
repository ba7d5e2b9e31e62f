// Resource faults on real VMs, through the OCI CLI: a full state directory, a container that outgrows
// its memory limit inside the guest, and prestart hooks that never return (with and without their own
// timeout). Each ends in a reported error or exit status and leaves nothing behind.

import assert from "node:assert/strict";
import { access, chmod, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { errnoOf } from "../../src/base/errors.js";
import { CommandMounter } from "../../src/platform/mount.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot } from "../helpers/cli.js";
import { requires } from "../helpers/requires.js";
import { eventually, makeWorld, processesWith, vmTimeoutMs, type VmWorld } from "../helpers/vm-world.js";

const mounter = new CommandMounter(new NodeProcessRunner());
const memoryLimit = 16 * 1024 * 1024;

/** Writes zeros into `file` until the file system is full. */
async function fill(file: string): Promise<void> {
  const fh = await open(file, "w");
  const chunk = Buffer.alloc(4096);
  try {
    for (;;) await fh.write(chunk);
  } catch (e) {
    if (errnoOf(e) !== "ENOSPC") throw e;
  } finally {
    await fh.close();
  }
}

async function assertNothingLeft(w: VmWorld, id: string, opts: { rootIsMount?: boolean } = {}): Promise<void> {
  const left = await leftovers(w.root);
  assert.deepEqual(opts.rootIsMount === true ? left.filter((l) => l !== `mount ${w.root}`) : left, []);
  assert.deepEqual(await netnsLeft([id]), []);
}

describe("resource faults (real VM)", { skip: requires("root", "qemu", "image", "netns") }, () => {
  let work = "";
  const roots: string[] = [];

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-rfaults-"));
  });

  after(async () => {
    for (const r of roots) await removeRunRoot(r);
    await rm(work, { recursive: true, force: true });
  });

  it("refuses a create when the state directory is full, before any VM starts, leaving nothing", async () => {
    // A "hypervisor" that only records that it ran: the create must fail before it is started.
    const marker = path.join(work, "hypervisor-ran");
    const fakeQemu = path.join(work, "record-qemu");
    await writeFile(fakeQemu, `#!/bin/sh\ntouch ${marker}\nexit 1\n`);
    await chmod(fakeQemu, 0o755);
    const root = await makeRunRoot();
    await mounter.mount({ source: "tmpfs", target: root, fstype: "tmpfs", options: ["size=256k"] });
    try {
      await fill(path.join(root, "filler"));
      const w = await makeWorld(work, "full", { root, toml: `[hypervisor.qemu]\npath = "${fakeQemu}"\n` });
      const id = `full${process.pid}`;

      const r = await w.create(id, await w.bundle("bundle", ["true"]));

      assert.notEqual(r.code, 0);
      const file = path.join(root, "sbs", id, "state.json");
      assert.ok(r.stderr.includes(`save state ${file} (no space left in ${root})`), r.stderr);
      assert.match(r.stderr, /ENOSPC/);
      await assert.rejects(access(marker), /ENOENT/, "the hypervisor must not have been started");
      await assertNothingLeft(w, id, { rootIsMount: true });
    } finally {
      await mounter.unmount(root);
      roots.push(root);
    }
  });

  it(
    "kills what outgrows a container's memory limit in the guest (exit 137), reported as an OOM kill, with the limit hits in stats",
    {
      timeout: vmTimeoutMs,
    },
    async () => {
      const w = await makeWorld(work, "oom");
      roots.push(w.root);
      const id = `oom${process.pid}`;
      // tail keeps the whole of a newline-free input: first a child outgrows the limit, then (once the
      // test has looked at the stats) the container's own process does.
      const script = [
        "dd if=/dev/zero bs=1M count=64 2>/dev/null | tail",
        'echo "tail exited $?"',
        "while [ ! -e /dev/shm/go ]; do sleep 0.2; done",
        "exec tail /dev/zero",
      ].join("; ");
      const bundle = await w.bundle("bundle", ["sh", "-c", script], (s) => {
        s.linux = { ...s.linux, resources: { ...s.linux?.resources, memory: { limit: memoryLimit } } };
      });
      const created = await w.create(id, bundle);
      assert.equal(created.code, 0, created.stderr);
      const started = await w.piped(["start", id]);
      assert.equal(started.code, 0, started.stderr);

      const childKilled = await eventually(
        async () => (await readFile(created.out, "utf8")).includes("tail exited 137"),
        120_000,
      );

      assert.ok(childKilled, `the child is SIGKILLed: ${await readFile(created.out, "utf8")}`);
      // The kill is reported as an OOM kill (runc's {"type":"oom"} event), not only as exit 137.
      let lines: { type: string; id: string; data?: unknown }[] = [];
      const reported = await eventually(async () => {
        const stats = await w.piped(["events", "--stats", id]);
        assert.equal(stats.code, 0, stats.stderr);
        lines = stats.stdout
          .toString()
          .trim()
          .split("\n")
          // CAST: the CLI prints one JSON event per line.
          .map((l) => JSON.parse(l) as { type: string; id: string; data?: unknown });
        return lines.some((l) => l.type === "oom" && l.id === id);
      }, 30_000);
      assert.ok(reported, `an oom event: ${JSON.stringify(lines)}`);
      const statsLine = lines.find((l) => l.type === "stats");
      assert.ok(statsLine !== undefined);
      // runc's stats JSON (data.memory.usage), 64-bit counters as numbers.
      const usage = (statsLine as unknown as { data: { memory: { usage: { limit: number; failcnt: number } } } }).data
        .memory.usage;
      assert.equal(usage.limit, memoryLimit);
      assert.ok(usage.failcnt > 0, "memory.events max counts the limit hits");
      const go = await w.piped(["exec", id, "--", "touch", "/dev/shm/go"]);
      assert.equal(go.code, 0, go.stderr);
      const waited = await w.piped(["wait", id]);
      assert.match(waited.stdout.toString(), /^137 /, "the container's process is SIGKILLed too");
      const del = await w.piped(["delete", id]);
      assert.equal(del.code, 0, del.stderr);
      await assertNothingLeft(w, id);
    },
  );

  it("fails a create whose prestart hook outlives its timeout, leaving no hook and nothing else", async () => {
    const w = await makeWorld(work, "hook-timeout");
    roots.push(w.root);
    const id = `hookto${process.pid}`;
    const marker = String(3_000_000 + process.pid);
    const bundle = await w.bundle("bundle", ["true"], (s) => {
      s.hooks = { prestart: [{ path: "/bin/sleep", args: ["sleep", marker], timeout: 3 }] };
    });

    const r = await w.create(id, bundle);

    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /prestart hook \/bin\/sleep timed out after 3s/);
    assert.deepEqual(await processesWith(marker), []);
    await assertNothingLeft(w, id);
  });

  it(
    "bounds a prestart hook that never returns by the create deadline, leaving no hook and nothing else",
    {
      timeout: vmTimeoutMs,
    },
    async () => {
      // The CLI's create deadline is dial_timeout + create_container_timeout + 60 s: 62 s here.
      const w = await makeWorld(work, "hook-hang", {
        toml: "[agent.kata]\ndial_timeout = 1\n[runtime]\ncreate_container_timeout = 1\n",
      });
      roots.push(w.root);
      const id = `hookhang${process.pid}`;
      const marker = String(4_000_000 + process.pid);
      const bundle = await w.bundle("bundle", ["true"], (s) => {
        s.hooks = { prestart: [{ path: "/bin/sleep", args: ["sleep", marker] }] };
      });

      const r = await w.create(id, bundle);

      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`create on sandbox ${id}: its service did not answer within 62 s`));
      assert.deepEqual(await processesWith(marker), []);
      await assertNothingLeft(w, id);
    },
  );
});
