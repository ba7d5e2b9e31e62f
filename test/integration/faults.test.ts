// Process faults on real VMs, through the OCI CLI: QEMU killed, the guest agent killed inside its VM,
// the per-sandbox service killed, and a host reboot (every process gone, mounts and netns cleared, the
// state directory left, the service's pid recycled). Each ends with the sandbox reported stopped and a
// cleanup that leaves nothing: no service, QEMU, mount, netns, state or mapping.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NetnsManager, netnsName } from "../../src/network/netns.js";
import { CommandMounter } from "../../src/platform/mount.js";
import { mountsUnder, parseMountInfo } from "../../src/platform/mountinfo.js";
import { NodeProcessRunner, processExists } from "../../src/platform/process.js";
import { leftovers, netnsLeft, removeRunRoot } from "../helpers/cli.js";
import { requires } from "../helpers/requires.js";
import { eventually, makeWorld, savedPids, vmTimeoutMs, type VmWorld } from "../helpers/vm-world.js";

const runner = new NodeProcessRunner();
const loop = ["sh", "-c", "while true; do sleep 1; done"];

/** The status `kata-ts list --format json` gives a container. */
async function listed(w: VmWorld, id: string): Promise<string | undefined> {
  const r = await w.piped(["list", "--format", "json"]);
  assert.equal(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout.toString()) as { id: string; status: string }[];
  return rows.find((row) => row.id === id)?.status;
}

async function stateOf(w: VmWorld, id: string): Promise<{ status: string }> {
  const r = await w.piped(["state", id]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.toString()) as { status: string };
}

/** `kata-ts wait`: the exit status the runtime reports for the container. */
async function exitStatusOf(w: VmWorld, id: string): Promise<number> {
  const r = await w.piped(["wait", id]);
  assert.equal(r.code, 0, r.stderr);
  return Number(r.stdout.toString().split(" ")[0]);
}

async function assertNothingLeft(w: VmWorld, id: string): Promise<void> {
  assert.deepEqual(await leftovers(w.root), []);
  assert.deepEqual(await netnsLeft([id]), []);
}

describe("process faults (real VM)", { skip: requires("root", "qemu", "image", "netns") }, () => {
  let work = "";
  const worlds: VmWorld[] = [];

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-faults-"));
  });

  after(async () => {
    for (const w of worlds) await removeRunRoot(w.root);
    await rm(work, { recursive: true, force: true });
  });

  /** A private world running sandbox `id` (created and started) with `args`. */
  async function running(id: string, args: string[], edit?: Parameters<VmWorld["bundle"]>[2]) {
    const w = await makeWorld(work, id, { toml: "[agent.kata]\nrequest_timeout_ms = 5000\n" });
    worlds.push(w);
    const created = await w.create(id, await w.bundle("bundle", args, edit));
    assert.equal(created.code, 0, created.stderr);
    const started = await w.piped(["start", id]);
    assert.equal(started.code, 0, started.stderr);
    return { w, ...(await savedPids(w.root, id)) };
  }

  it(
    "reports the container stopped (255) when QEMU is killed, and a plain delete removes everything",
    {
      timeout: vmTimeoutMs,
    },
    async () => {
      const id = `qemukill${process.pid}`;
      const { w, vmPid, servicePid } = await running(id, loop);

      process.kill(vmPid, "SIGKILL");

      assert.equal(await exitStatusOf(w, id), 255);
      assert.equal((await stateOf(w, id)).status, "stopped");
      assert.equal(processExists(servicePid), true, "the service outlives its VM until the sandbox is deleted");
      const del = await w.piped(["delete", id]);
      assert.equal(del.code, 0, del.stderr);
      const ended = await eventually(() => Promise.resolve(!processExists(servicePid)), 10_000);
      assert.ok(ended, "deleting the sandbox ends its service");
      await assertNothingLeft(w, id);
    },
  );

  it(
    "reports the sandbox lost (255) when its guest agent is killed, and delete --force removes everything",
    {
      timeout: vmTimeoutMs,
    },
    async () => {
      // The container shares the guest's pid namespace and kills the agent, the guest's only node
      // process; busybox init starts another, which knows none of the sandbox's containers.
      const id = `agentkill${process.pid}`;
      const { w, vmPid } = await running(id, ["sh", "-c", "sleep 3; kill -9 $(pidof node); sleep 1000"], (s) => {
        if (s.linux?.namespaces) s.linux.namespaces = s.linux.namespaces.filter((ns) => ns.type !== "pid");
      });

      assert.equal(await exitStatusOf(w, id), 255);
      assert.equal((await stateOf(w, id)).status, "stopped");
      assert.equal(processExists(vmPid), true, "the VM runs on: the loss comes from the agent");
      const exec = await w.piped(["exec", id, "--", "true"]);
      assert.notEqual(exec.code, 0, "nothing can be run in a lost sandbox");
      const restarted = await eventually(async () => {
        const console = await readFile(path.join(w.root, "vm", id, "console.log"), "utf8");
        return (console.match(/"msg":"serving"/g)?.length ?? 0) >= 2;
      }, 60_000);
      assert.ok(restarted, "init starts another agent (it serves the port again)");
      assert.match(await readFile(path.join(w.dir, "kata.log"), "utf8"), /its guest agent exited/);
      const del = await w.piped(["delete", "--force", id]);
      assert.equal(del.code, 0, del.stderr);
      assert.equal(processExists(vmPid), false, "QEMU must be gone");
      await assertNothingLeft(w, id);
    },
  );

  it(
    "answers state from the saved state when the service is killed, and delete --force removes everything",
    {
      timeout: vmTimeoutMs,
    },
    async () => {
      const id = `svckill${process.pid}`;
      const { w, servicePid, vmPid } = await running(id, loop);

      process.kill(servicePid, "SIGKILL");

      assert.equal((await stateOf(w, id)).status, "stopped");
      assert.equal(await listed(w, id), "stopped");
      const plain = await w.piped(["delete", id]);
      assert.notEqual(plain.code, 0);
      assert.match(
        plain.stderr,
        new RegExp(`sandbox ${id}: its service is not running; .kata-ts delete --force ${id}.`),
      );
      const del = await w.piped(["delete", "--force", id]);
      assert.equal(del.code, 0, del.stderr);
      assert.equal(processExists(vmPid), false, "QEMU must be gone");
      await assertNothingLeft(w, id);
    },
  );

  it(
    "shows a sandbox stopped after a host reboot, even with its service's pid recycled; delete --force cleans up",
    {
      timeout: vmTimeoutMs,
    },
    async () => {
      const id = `reboot${process.pid}`;
      const { w, servicePid, vmPid } = await running(id, loop);
      // What a reboot does: every process gone, mounts and /var/run (the netns) cleared; the state
      // directory stays, and the service's pid now names some other process.
      process.kill(servicePid, "SIGKILL");
      process.kill(vmPid, "SIGKILL");
      const mounter = new CommandMounter(runner);
      // Deepest first, reading the table again each time: an unmount propagates to the share's view.
      for (;;) {
        const mounts = mountsUnder(parseMountInfo(await readFile("/proc/self/mountinfo", "utf8")), w.root);
        const deepest = [...mounts].sort((a, b) => b.length - a.length)[0];
        if (deepest === undefined) break;
        await mounter.unmount(deepest, { detach: true });
      }
      await new NetnsManager({ runner }).remove(netnsName(id));
      const stranger = spawn("sleep", ["1000"], { stdio: "ignore" });
      try {
        const stateFile = path.join(w.root, "sbs", id, "state.json");
        const state = JSON.parse(await readFile(stateFile, "utf8")) as Record<string, unknown>;
        await writeFile(stateFile, JSON.stringify({ ...state, servicePid: stranger.pid }));

        assert.equal(await listed(w, id), "stopped");
        assert.equal((await stateOf(w, id)).status, "stopped");
        const del = await w.piped(["delete", "--force", id]);

        assert.equal(del.code, 0, del.stderr);
        assert.equal(stranger.exitCode, null, "the process that took the service's pid is left alone");
        assert.equal(processExists(stranger.pid ?? 0), true);
        await assertNothingLeft(w, id);
      } finally {
        stranger.kill("SIGKILL");
      }
    },
  );
});
