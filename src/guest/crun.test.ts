import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, describeError, isKataError } from "../base/errors.js";
import { kataError, ScriptedRunner, type ScriptedReply } from "../../test/helpers/fakes.js";
import { Crun, crunTimeoutsMs, type CrunCommand } from "./crun.js";

let stateDir = "";

/** A Crun on `script`, whose state directory is a scratch one (no container has state unless made). */
function crunWith(
  script: (verb: string, args: readonly string[]) => ScriptedReply,
  timeoutsMs: Partial<Record<CrunCommand, number>> = {},
): { crun: Crun; runner: ScriptedRunner } {
  // Arguments after "--root <dir>": the verb first.
  const runner = new ScriptedRunner((_file, args) => script(args[2] ?? "", args.slice(3)));
  return { crun: new Crun(runner, { binary: "crun", stateDir, timeoutsMs }), runner };
}

/** Gives container `id` a crun status file, as a container crun still knows has. */
async function haveState(id: string): Promise<void> {
  await mkdir(path.join(stateDir, id), { recursive: true });
  await writeFile(path.join(stateDir, id, "status"), "{}");
}

const killFailed: ScriptedReply = { code: 1, stderr: "kill container: No such process\n" };
const stateOf = (status: string): ScriptedReply => ({ stdout: JSON.stringify({ id: "c1", pid: 0, status }) });

describe("Crun", () => {
  beforeEach(async () => {
    stateDir = await mkdtemp(path.join(tmpdir(), "kata-ts-crun-"));
  });
  afterEach(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  describe("kill", () => {
    it("runs crun kill, with --all for every process of the container", async () => {
      const { crun, runner } = crunWith(() => ({}));

      await crun.kill("c1", 15, false);
      await crun.kill("c1", 9, true);

      assert.deepEqual(runner.argv, [
        ["crun", "--root", stateDir, "kill", "c1", "15"],
        ["crun", "--root", stateDir, "kill", "--all", "c1", "9"],
      ]);
    });

    it("succeeds for a container that crun reports stopped (it exited mid-call)", async () => {
      await haveState("c1");
      const { crun, runner } = crunWith((verb) => (verb === "kill" ? killFailed : stateOf("stopped")));

      await crun.kill("c1", 9, true);

      assert.deepEqual(
        runner.calls.map((c) => c.args[2]),
        ["kill", "state"],
      );
    });

    it("succeeds for a container crun keeps no state for any more (crun run removed it)", async () => {
      const { crun } = crunWith((verb) => (verb === "kill" ? killFailed : { code: 1, stderr: "no such container" }));

      await crun.kill("c1", 15, false);
    });

    it("fails with crun's answer when the container still runs", async () => {
      await haveState("c1");
      const { crun } = crunWith((verb) =>
        verb === "kill" ? { code: 1, stderr: "permission denied" } : stateOf("running"),
      );

      await assert.rejects(
        crun.kill("c1", 15, false),
        kataError(Code.Internal, `crun --root ${stateDir} kill c1 15: exit code 1: permission denied`),
      );
    });

    it("keeps the kill's error, with the failed state check beside it, when crun state fails too", async () => {
      await haveState("c1");
      const { crun } = crunWith((verb) =>
        verb === "kill" ? { code: 1, stderr: "kill failed" } : { code: 1, stderr: "state failed" },
      );

      const e = await crun.kill("c1", 15, false).catch((err: unknown) => err);

      assert.ok(isKataError(e, Code.Internal));
      assert.match(e.message, /kill c1 15: exit code 1: kill failed$/);
      assert.equal(e.suppressed.length, 1);
      assert.match(describeError(e), /kill failed; also failed: crun --root \S+ state c1: exit code 1: state failed$/);
    });

    it("fails DEADLINE_EXCEEDED, without asking for the state, when crun kill hangs", async () => {
      const { crun, runner } = crunWith(() => "hang", { kill: 20 });

      await assert.rejects(
        crun.kill("c1", 9, true),
        kataError(Code.DeadlineExceeded, `crun --root ${stateDir} kill --all c1 9: timed out`),
      );
      assert.equal(runner.calls.length, 1);
    });
  });

  describe("launcher", () => {
    it("runs every crun command through the launcher, crun's path first", async () => {
      const runner = new ScriptedRunner(() => ({}));
      const crun = new Crun(runner, { binary: "/usr/bin/crun", launcher: "/usr/bin/kata-ts-sealed-exec", stateDir });

      await crun.kill("c1", 15, false);
      await crun.pause("c1");

      assert.deepEqual(runner.argv, [
        ["/usr/bin/kata-ts-sealed-exec", "/usr/bin/crun", "--root", stateDir, "kill", "c1", "15"],
        ["/usr/bin/kata-ts-sealed-exec", "/usr/bin/crun", "--root", stateDir, "pause", "c1"],
      ]);
    });

    it("runs only the launcherVerbs through the launcher, the rest direct", async () => {
      const runner = new ScriptedRunner(() => ({}));
      const crun = new Crun(runner, {
        binary: "/usr/bin/crun",
        launcher: "/usr/bin/kata-ts-sealed-exec",
        launcherVerbs: new Set(["pause"]),
        stateDir,
      });

      await crun.pause("c1");
      await crun.kill("c1", 15, false);

      assert.deepEqual(runner.argv, [
        ["/usr/bin/kata-ts-sealed-exec", "/usr/bin/crun", "--root", stateDir, "pause", "c1"],
        ["/usr/bin/crun", "--root", stateDir, "kill", "c1", "15"],
      ]);
    });
  });

  describe("deadlines", () => {
    const calls: [CrunCommand, (c: Crun, signal?: AbortSignal) => Promise<unknown>, string][] = [
      ["kill", (c, s) => c.kill("c1", 9, false, s), "kill c1 9"],
      ["delete", (c, s) => c.delete("c1", s), "delete --force c1"],
      ["update", (c, s) => c.update("c1", "/b/update.json", s), "update --resources /b/update.json c1"],
      ["pause", (c, s) => c.pause("c1", s), "pause c1"],
      ["resume", (c, s) => c.resume("c1", s), "resume c1"],
      ["ps", (c, s) => c.ps("c1", s), "ps --format json c1"],
      ["state", (c, s) => c.state("c1", s), "state c1"],
    ];

    it("are named per command, kill and delete shorter than the rest", () => {
      assert.ok(crunTimeoutsMs.kill < crunTimeoutsMs.update && crunTimeoutsMs.delete < crunTimeoutsMs.pause);
      assert.equal(crunTimeoutsMs.update, 10_000);
    });

    for (const [command, call, shown] of calls) {
      it(`bound crun ${command}: DEADLINE_EXCEEDED naming the command`, async () => {
        const { crun, runner } = crunWith(() => "stuck", { [command]: 20 });

        await assert.rejects(
          call(crun),
          kataError(Code.DeadlineExceeded, `crun --root ${stateDir} ${shown}: timed out`),
        );
        assert.equal(runner.calls[0]?.signal?.aborted, true);
      });

      it(`end crun ${command} CANCELLED when the caller's signal aborts`, async () => {
        const { crun } = crunWith(() => "hang");
        const ctl = new AbortController();

        const p = call(crun, ctl.signal);
        ctl.abort();

        await assert.rejects(p, kataError(Code.Cancelled, `${shown}: cancelled`));
      });
    }
  });

  describe("ps and state", () => {
    it("reads the pids crun ps prints", async () => {
      const { crun } = crunWith(() => ({ stdout: "[1, 42]" }));

      assert.deepEqual(await crun.ps("c1"), [1, 42]);
    });

    it("fails INTERNAL on output that is not a JSON array", async () => {
      const { crun } = crunWith(() => ({ stdout: "oops" }));
      const { crun: objectCrun } = crunWith(() => ({ stdout: "{}" }));

      await assert.rejects(crun.ps("c1"), kataError(Code.Internal, "crun ps c1: output is not JSON"));
      await assert.rejects(objectCrun.ps("c1"), kataError(Code.Internal, "crun ps c1: output is not a JSON array"));
    });

    it("reads the status and pid of crun state, and refuses a state without status", async () => {
      const { crun } = crunWith(() => ({ stdout: '{"status": "paused", "pid": 7}' }));
      const { crun: bad } = crunWith(() => ({ stdout: '{"pid": 7}' }));

      assert.deepEqual(await crun.state("c1"), { status: "paused", pid: 7 });
      await assert.rejects(bad.state("c1"), kataError(Code.Internal, "crun state c1: output has no status"));
    });
  });
});
