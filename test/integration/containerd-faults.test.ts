// Faults under the real containerd (Debian's 1.6): the per-sandbox service killed, QEMU killed,
// containerd itself killed and restarted while a task runs. Each case ends with a leak check: no
// process, mount or state of the task is left, under kata-ts's root or containerd's directories.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { connectTask } from "../../src/cli/service-client.js";
import { parseMountInfo } from "../../src/platform/mountinfo.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, repoRoot } from "../helpers/cli.js";
import { startContainerd, testImageName, type TestContainerd } from "../helpers/containerd.js";
import { requires } from "../helpers/requires.js";
import { eventually, savedPids, vmEnv, vmTimeoutMs } from "../helpers/vm-world.js";
import { delay } from "../../src/base/async.js";

const runtime = "io.containerd.kata-ts.v2";
const runner = new NodeProcessRunner();

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
        // Subscribed before the task exists, and seen to receive its /tasks/start: a `ctr events` still
        // starting when QEMU is killed would miss the exit (seen in CI under load).
        const events = spawn("ctr", ["--address", c.address, "events"], { stdio: ["ignore", "pipe", "ignore"] });
        let seen = "";
        events.stdout.on("data", (d: Buffer) => {
          seen += d.toString();
        });
        let pids = { servicePid: 0, vmPid: 0 };
        try {
          await delay(1000);
          pids = await runDetached(c, id);
          assert.ok(
            await eventually(() => Promise.resolve(new RegExp(`/tasks/start.*${id}`).test(seen)), 10_000),
            `ctr events receives the task's events: ${seen}`,
          );
          process.kill(pids.vmPid, "SIGKILL");
          assert.ok(await eventually(async () => (await taskStatus(c, id)) === "STOPPED", 30_000), await c.log());
          assert.ok(
            await eventually(() => Promise.resolve(new RegExp(`/tasks/exit.*${id}`).test(seen)), 10_000),
            `TaskExit for ${id} published: ${seen}`,
          );
        } catch (e) {
          // Leave nothing running for the next case, which checks for leftovers itself.
          await c.ctr(["task", "delete", "--force", id]);
          await c.ctr(["containers", "delete", id]);
          throw e;
        } finally {
          events.kill();
        }
        const { servicePid, vmPid } = pids;
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

describe(
  "the shim binary with an events socket that never answers (real VM; no containerd: the shim driven as containerd does)",
  { skip: requires("root", "qemu", "image") },
  () => {
    it(
      "start, create, start, wait, delete and shutdown all answer while every event publish hangs; nothing is left",
      { timeout: vmTimeoutMs },
      async (t) => {
        const dir = await mkdtemp(path.join(tmpdir(), "kata-ts-blackhole-"));
        const root = path.join(dir, "root");
        await mkdir(root, { mode: 0o700 });
        // Accepts connections and never reads or answers: every Forward of the publisher hangs.
        const held: net.Socket[] = [];
        const blackhole = net.createServer((s) => held.push(s));
        const eventsSock = path.join(dir, "events.sock");
        await new Promise<void>((r) => blackhole.listen(eventsSock, r));
        t.after(async () => {
          for (const s of held) s.destroy();
          await new Promise<void>((r) =>
            blackhole.close(() => {
              r();
            }),
          );
          await rm(dir, { recursive: true, force: true });
        });
        const id = `blackhole${process.pid}`;
        const bundle = await makeBusyboxBundle({ runner }, { dir: path.join(dir, id), args: ["sh", "-c", "exit 7"] });
        const shim = path.join(repoRoot, "dist/src/cli/containerd-shim-main.js");
        const env = { ...vmEnv, KATA_TS_ROOT: root, TTRPC_ADDRESS: eventsSock };
        const started = await runner.run(
          process.execPath,
          [shim, "-namespace", "ns1", "-address", path.join(dir, "none.sock"), "-id", id, "start"],
          { cwd: bundle, env, signal: AbortSignal.timeout(vmTimeoutMs) },
        );
        assert.equal(started.code, 0, started.stderr);
        const address = started.stdout.trim();
        assert.equal(await readFile(path.join(bundle, "address"), "utf8"), address);
        const conn = await connectTask(address.replace(/^unix:\/\//, ""));
        try {
          // Each call gets a hang check, not a timing target: a publisher that blocked would stall it.
          const bounded = { signal: AbortSignal.timeout(120_000) };
          await conn.task.create({ id, bundle }, bounded);
          await conn.task.start({ id }, bounded);
          const waited = await conn.task.wait({ id }, bounded);
          assert.equal(waited.exitStatus, 7);
          await conn.task.delete({ id }, bounded);
          await conn.task.shutdown({ id }, bounded);
        } finally {
          await conn.close();
        }
        assert.ok(held.length > 0, "the publisher did connect to the events socket");
        assert.ok(
          await eventually(async () => (await leftovers(root)).length === 0, 15_000),
          String(await leftovers(root)),
        );
      },
    );
  },
);
