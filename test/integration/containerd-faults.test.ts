// Faults under the real containerd (Debian's 1.6): the per-sandbox service killed, QEMU killed,
// containerd itself killed and restarted while a task runs. Each case ends with a leak check: no
// process, mount or state of the task is left, under kata-ts's root or containerd's directories.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { parseMountInfo } from "../../src/platform/mountinfo.js";
import { leftovers } from "../helpers/cli.js";
import { startContainerd, testImageName, type TestContainerd } from "../helpers/containerd.js";
import { requires } from "../helpers/requires.js";
import { eventually, savedPids, vmTimeoutMs } from "../helpers/vm-world.js";

const runtime = "io.containerd.kata-ts.v2";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Mounts under containerd's private directory (task rootfs overlays, our shares): none may remain. */
async function mountsUnder(dir: string): Promise<string[]> {
  return parseMountInfo(await readFile("/proc/self/mountinfo", "utf8"))
    .map((m) => m.mountPoint)
    .filter((m) => m.startsWith(`${dir}/`));
}

describe(
  "containerd faults: service killed, QEMU killed, containerd restarted (real containerd, real VMs)",
  { skip: requires("root", "qemu", "image", "containerd") },
  () => {
    let ctrd: TestContainerd | undefined;

    before(async () => {
      ctrd = await startContainerd();
    });

    after(async () => {
      await ctrd?.stop();
    });

    /** `ctr run -d` of a sleeping task; its service's and QEMU's pids. */
    async function runDetached(c: TestContainerd, id: string): Promise<{ servicePid: number; vmPid: number }> {
      const run = await c.ctr(["run", "-d", "--runtime", runtime, testImageName, id, "sleep", "600"]);
      assert.equal(run.code, 0, `${run.stderr}\n${await c.log()}`);
      return savedPids(c.kataRoot, id);
    }

    async function taskStatus(c: TestContainerd, id: string): Promise<string> {
      const listed = (await c.ctr(["task", "ls"])).stdout;
      return new RegExp(`^${id}\\s+\\d+\\s+(\\w+)`, "m").exec(listed)?.[1] ?? "absent";
    }

    async function assertNothingLeft(c: TestContainerd, pids: readonly number[]): Promise<void> {
      assert.ok(await eventually(() => Promise.resolve(pids.every((p) => !alive(p))), 10_000), "processes gone");
      assert.deepEqual(await leftovers(c.kataRoot), []);
      assert.deepEqual(await mountsUnder(c.dir), []);
    }

    it(
      "the service SIGKILLed: QEMU dies with it, the task is seen stopped, and containerd's cleanup (the shim's delete) leaves no VM, mount or state",
      { timeout: vmTimeoutMs },
      async () => {
        assert.ok(ctrd !== undefined);
        const id = `svckill${process.pid}`;
        const { servicePid, vmPid } = await runDetached(ctrd, id);
        process.kill(servicePid, "SIGKILL");
        const c = ctrd;
        assert.ok(await eventually(async () => (await taskStatus(c, id)) !== "RUNNING", 30_000), await c.log());
        const del = await c.ctr(["task", "delete", id]);
        // containerd may have deleted the dead task itself; either way it must be gone now.
        assert.ok(del.code === 0 || /not found/.test(del.stderr), del.stderr);
        assert.equal((await c.ctr(["containers", "delete", id])).code, 0);
        await assertNothingLeft(c, [servicePid, vmPid]);
      },
    );

    it(
      "QEMU SIGKILLed under a running task: the task exits with a non-zero status, TaskExit is published, delete cleans up",
      { timeout: vmTimeoutMs },
      async () => {
        assert.ok(ctrd !== undefined);
        const c = ctrd;
        const id = `qemukill${process.pid}`;
        const { servicePid, vmPid } = await runDetached(c, id);
        const events = spawn("ctr", ["--address", c.address, "events"], { stdio: ["ignore", "pipe", "ignore"] });
        let seen = "";
        events.stdout.on("data", (d: Buffer) => {
          seen += d.toString();
        });
        try {
          process.kill(vmPid, "SIGKILL");
          assert.ok(await eventually(async () => (await taskStatus(c, id)) === "STOPPED", 30_000), await c.log());
          assert.ok(
            await eventually(() => Promise.resolve(new RegExp(`/tasks/exit.*${id}`).test(seen)), 10_000),
            `TaskExit for ${id} published: ${seen}`,
          );
        } finally {
          events.kill();
        }
        const del = await c.ctr(["task", "delete", id]);
        assert.equal(del.code, 0, del.stderr);
        assert.match(del.stderr, /exit with non-zero exit code \d+/);
        assert.equal((await c.ctr(["containers", "delete", id])).code, 0);
        await assertNothingLeft(c, [servicePid, vmPid]);
      },
    );

    it(
      "containerd SIGKILLed and restarted while a task runs: the task keeps running, containerd reconnects to its service, execs in it, and stops it",
      { timeout: vmTimeoutMs },
      async () => {
        assert.ok(ctrd !== undefined);
        const c = ctrd;
        const id = `ctrdrestart${process.pid}`;
        const { servicePid, vmPid } = await runDetached(c, id);
        await c.restart();
        assert.ok(alive(servicePid) && alive(vmPid), "the service and its VM survive containerd");
        assert.ok(await eventually(async () => (await taskStatus(c, id)) === "RUNNING", 30_000), await c.log());
        const exec = await c.ctr(["task", "exec", "--exec-id", "after", id, "sh", "-c", "echo still-here"]);
        assert.equal(exec.stdout, "still-here\n", exec.stderr);
        assert.equal((await c.ctr(["task", "kill", "-s", "SIGKILL", id])).code, 0);
        assert.ok(await eventually(async () => (await taskStatus(c, id)) === "STOPPED", 30_000));
        assert.equal((await c.ctr(["task", "delete", id])).code, 0);
        assert.equal((await c.ctr(["containers", "delete", id])).code, 0);
        await assertNothingLeft(c, [servicePid, vmPid]);
      },
    );
  },
);
