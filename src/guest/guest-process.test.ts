// GuestProcess with real child processes standing in for `crun exec`: a shell that starts the
// "container process" in the background, writes its pid where crun's --pid-file would, and waits for it.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { delay } from "../base/async.js";
import { ignoreErrno } from "../base/errors.js";
import { NodeProcessRunner } from "../platform/process.js";
import { GuestProcess, catchesSignal } from "./guest-process.js";

const runner = new NodeProcessRunner();

describe("GuestProcess.signalInContainer", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-guest-process-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function fakeCrunExec(name: string): Promise<{ p: GuestProcess; pidFile: string }> {
    const pidFile = path.join(dir, `${name}.pid`);
    // Like crun exec: the parent forwards nothing and ends when its child does, with its status.
    const child = await runner.spawn("sh", ["-c", `sleep 300 & echo $! > ${pidFile}; wait $!; exit $?`], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    for (let i = 0; i < 100 && ((await readFile(pidFile, "utf8").catch(ignoreErrno("ENOENT"))) ?? "") === ""; i++)
      await delay(20);
    return { p: new GuestProcess(name, child, undefined, pidFile), pidFile };
  }

  it("SIGKILL reaches the process in the container, so the exec ends and its output closes", async () => {
    const { p } = await fakeCrunExec("e1");
    await p.signalInContainer(9);
    const code = await Promise.race([p.exitCode, delay(5000).then(() => -1)]);
    assert.equal(code, 137, "the parent reports its child's SIGKILL (128 + 9)");
    assert.equal(p.exited, true);
    // Signalling the parent instead would leave `sleep` holding the pipe open: no end of file.
    for (let i = 0; i < 50 && !p.stdout.ended; i++) await delay(20);
    assert.ok(p.stdout.ended, "stdout reached end of file");
  });

  it("after the exec exited, a signal is a no-op (the pid may be reused)", async () => {
    const { p } = await fakeCrunExec("e2");
    await p.signalInContainer(9);
    await p.exitCode;
    await p.signalInContainer(9);
    await p.signalInContainer(15);
  });

  it("rejects a number that is no signal", async () => {
    const { p } = await fakeCrunExec("e3");
    await assert.rejects(p.signalInContainer(4242), /signal 4242 is not a signal number/);
    await p.signalInContainer(9);
    await p.exitCode;
  });
});

describe("catchesSignal", () => {
  it("reads a process's SigCgt: a handler counts, a default action does not, a gone process does not", async () => {
    const handler = (): void => undefined;
    process.on("SIGUSR2", handler);
    try {
      const sleeper = await new NodeProcessRunner().spawn("sleep", ["30"]);
      try {
        assert.equal(await catchesSignal(process.pid, 12), true);
        assert.equal(await catchesSignal(sleeper.pid, 12), false);
        assert.equal(await catchesSignal(2 ** 22 + 1, 12), false);
      } finally {
        sleeper.kill("SIGKILL");
      }
    } finally {
      process.off("SIGUSR2", handler);
    }
  });
});
