// With the real launcher (dist/native/kata-ts-sealed-exec, built by npm run build) on the host.
import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { delay } from "../base/async.js";
import { NodeProcessRunner, type Child, type ProcessRunner } from "../platform/process.js";
import { repoRoot } from "../../test/helpers/cli.js";
import { Standby } from "./crun-standby.js";

const launcher = path.join(repoRoot, "dist", "native", "kata-ts-sealed-exec");

/** Counts the spawns it passes on. */
class CountingRunner extends NodeProcessRunner {
  spawns = 0;
  override spawn(...a: Parameters<ProcessRunner["spawn"]>): Promise<Child> {
    this.spawns++;
    return super.spawn(...a);
  }
}

function collect(child: Child): Promise<string> {
  return new Promise((resolve) => {
    let out = "";
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (d: string) => (out += d));
    child.stdout?.once("end", () => {
      resolve(out);
    });
  });
}

describe("Standby (kata-ts-sealed-exec --standby)", () => {
  it("hands the program to the launcher started ahead: same pid, its pipes, its exit status", async () => {
    const runner = new CountingRunner();
    const s = new Standby(runner, launcher, 10);
    assert.equal(await s.take(["/bin/true"]), undefined, "none is ready before afterMs");
    await delay(300);
    const child = await s.take(["/bin/sh", "-c", 'read line; echo "pid $$ got $line"; exit 7']);
    assert.ok(child !== undefined);
    assert.equal(runner.spawns, 1);
    const out = collect(child);
    child.stdin?.end("hello\n");
    assert.equal(await out, `pid ${child.pid} got hello\n`);
    assert.deepEqual(await child.exited, { code: 7, signal: null });
    await s.close();
  });

  it("passes signals to the program, and is replaced after each take", async () => {
    const runner = new CountingRunner();
    const s = new Standby(runner, launcher, 10);
    await delay(300);
    s.busy();
    const child = await s.take(["/bin/sleep", "60"]);
    assert.ok(child !== undefined);
    await delay(300);
    assert.equal(runner.spawns, 1, "no new one while a command is in flight");
    s.idle();
    await delay(100);
    child.kill("SIGTERM");
    assert.deepEqual(await child.exited, { code: null, signal: "SIGTERM" });
    await delay(300);
    assert.equal(runner.spawns, 2, "a new one was started after the take");
    const next = await s.take(["/bin/sh", "-c", "exit 0"]);
    assert.deepEqual(await next?.exited, { code: 0, signal: null });
    await s.close();
  });

  it("gives none for a launcher that died while waiting, and close ends the one kept ready", async () => {
    const runner = new CountingRunner();
    const s = new Standby(runner, launcher, 10);
    await delay(300);
    const first = await s.take(["/bin/sh", "-c", "exit 0"]);
    await first?.exited;
    s.idle();
    await delay(300);
    // Kill the one now kept ready behind the Standby's back.
    const pids = await new NodeProcessRunner().run("pgrep", [
      "-P",
      String(process.pid),
      "-f",
      "kata-ts-sealed-exec --standby",
    ]);
    const pid = Number(pids.stdout.trim().split("\n")[0]);
    assert.ok(pid > 1, "a launcher is waiting");
    process.kill(pid, "SIGKILL");
    await delay(200);
    assert.equal(await s.take(["/bin/true"]), undefined);
    await delay(300);
    await s.close();
    const left = await new NodeProcessRunner().run("pgrep", [
      "-P",
      String(process.pid),
      "-f",
      "kata-ts-sealed-exec --standby",
    ]);
    assert.equal(left.stdout.trim(), "", "close leaves no launcher");
  });
});
