// The real guard (dist/native/kata-ts-vmguard, built by `npm run build`) around `sleep` instead of QEMU:
// who holds the lifeline owns the process; adoption moves it; the guarded process dies with its owner.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Duplex } from "node:stream";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner, processExists } from "./process.js";
import { GuardDecoder, Lifeline, adoptGuardedVm, guardArgv, parseGuardLine } from "./vm-guard.js";

const installRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const helper = path.join(installRoot, "dist", "native", "kata-ts-vmguard");

describe("guard messages", () => {
  it("parses P, X and A, and refuses anything else", () => {
    assert.deepEqual(parseGuardLine("P 123"), { kind: "pid", pid: 123 });
    assert.deepEqual(parseGuardLine("X 137"), { kind: "exited", code: 137 });
    assert.deepEqual(parseGuardLine("A"), { kind: "adopted" });
    for (const bad of ["P 0", "X 300", "A 1", "P", "Q 1", "P 1 2", "P -1"]) {
      assert.throws(() => parseGuardLine(bad), /unexpected message/, bad);
    }
    const d = new GuardDecoder();
    assert.deepEqual(d.push("P 4"), []);
    assert.deepEqual(d.push("2\nA\n"), [{ kind: "pid", pid: 42 }, { kind: "adopted" }]);
    assert.throws(() => d.push("x".repeat(100)), /line too long/);
  });
});

describe("kata-ts-vmguard (real helper, sleep as the guarded program)", () => {
  let dir = "";
  const runner = new NodeProcessRunner();
  const signal = new AbortController().signal;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-vmguard-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function guarded(name: string): Promise<{ life: Lifeline; ctl: string; guardPid: number }> {
    const ctl = path.join(dir, `${name}.sock`);
    const [file, ...args] = guardArgv(helper, ctl, path.join(dir, `${name}.err`), ["sleep", "1000"]);
    const cp = spawn(file as string, args, { stdio: ["ignore", "ignore", "inherit", "pipe"], detached: true });
    cp.unref();
    const life = await Lifeline.from(cp.stdio[3] as Duplex, signal, "test guard");
    return { life, ctl, guardPid: cp.pid as number };
  }

  /** The program the process runs: the guard reports the pid right after its fork, before the exec. */
  async function programOf(pid: number, want: string): Promise<string> {
    let argv0 = "";
    for (let i = 0; i < 100; i++) {
      argv0 = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0")[0] ?? "";
      if (argv0 === want) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    return argv0;
  }

  async function gone(pid: number): Promise<boolean> {
    for (let i = 0; i < 50 && processExists(pid); i++) await new Promise((r) => setTimeout(r, 50));
    return !processExists(pid);
  }

  it("reports the guarded pid; letting go of the lifeline kills it and the guard", async () => {
    const { life, guardPid, ctl } = await guarded("a");
    try {
      assert.ok(processExists(life.pid));
      assert.equal(await programOf(life.pid, "sleep"), "sleep");
      assert.equal((await stat(ctl)).mode & 0o777, 0o600, "control socket is 0600");
    } finally {
      life.kill();
    }
    assert.deepEqual(await life.exited, { code: null, signal: "SIGKILL" });
    assert.ok(await gone(life.pid), "guarded process gone");
    assert.ok(await gone(guardPid), "guard gone");
    await assert.rejects(stat(ctl), { code: "ENOENT" }, "control socket removed");
  });

  it("adoption moves ownership: the old owner is told and let go, the new one's kill ends the process", async () => {
    const { life: first, ctl } = await guarded("b");
    const second = await adoptGuardedVm(runner, helper, ctl, 5000, signal).catch((e: unknown) => {
      first.kill();
      throw e;
    });
    after(() => {
      second.kill();
    });
    assert.equal(second.pid, first.pid);
    await first.adopted;
    await first.exited;
    assert.ok(processExists(second.pid), "the first owner letting go did not kill it");
    await assert.rejects(stat(ctl), { code: "ENOENT" }, "one handoff only: the control socket is gone");
    await assert.rejects(
      adoptGuardedVm(runner, helper, ctl, 2000, signal),
      /hand the VM over: kata-ts-vmguard: connect to the guard: No such file or directory/,
    );

    second.kill();
    await second.exited;
    assert.ok(await gone(second.pid));
  });

  it("the guarded process exiting by itself is reported with its status", async () => {
    const { life } = await guarded("c");
    process.kill(life.pid, "SIGTERM");
    assert.deepEqual(await life.exited, { code: 143, signal: null });
  });
});
