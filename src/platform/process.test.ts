// NodeProcessRunner with the real launcher (dist/native/kata-ts-exec, built by `npm run build`): what a
// child holds, how a missing program or launcher is reported, argv0 and extra stdio.

import assert from "node:assert/strict";
import { spawn, type StdioOptions } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Duplex, Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { launcherRelPath } from "./launcher.js";
import { NodeProcessRunner } from "./process.js";

const installRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const launcher = path.join(installRoot, launcherRelPath);
const processModule = path.join(installRoot, "dist", "src", "platform", "process.js");
const timeout = 20_000;

/**
 * What `ls /proc/self/fd` lists when run by a NodeProcessRunner in a node process that inherited fd 200
 * without close-on-exec (as after `exec 200>file; kata-ts ...`).
 */
function fdsOfGrandchild(runnerOptions: object, file: string): Promise<string[]> {
  const script = `
    const { NodeProcessRunner } = await import(${JSON.stringify(processModule)});
    const r = await new NodeProcessRunner(${JSON.stringify(runnerOptions)}).run("ls", ["/proc/self/fd"]);
    process.stdout.write(r.stdout);
  `;
  const fd = openSync(file, "w");
  // Node hands a numeric stdio entry to the child at that index, without close-on-exec.
  const stdio: StdioOptions = ["ignore", "pipe", "inherit", ...Array<"ignore">(197).fill("ignore"), fd];
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio });
  closeSync(fd);
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      if (code === 0) resolve(out.split("\n").filter((l) => l !== ""));
      else reject(new Error(`fd probe exited with ${String(code)}`));
    });
  });
}

describe("NodeProcessRunner with the launcher", () => {
  let dir = "";
  const runner = new NodeProcessRunner({ launcher });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "process-test-"));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("gives a child no descriptor its parent inherited without close-on-exec", { timeout }, async () => {
    const direct = await fdsOfGrandchild({}, path.join(dir, "direct"));
    const launched = await fdsOfGrandchild({ launcher }, path.join(dir, "launched"));

    assert.ok(direct.includes("200"), `a direct child inherits fd 200 (the probe can see a leak): ${direct.join(" ")}`);
    // 0-2, and the descriptor ls opened to list the directory.
    assert.deepEqual(launched, ["0", "1", "2", "3"]);
  });

  it("keeps the extra stdio entries it was given, and the program sees them", { timeout }, async () => {
    const child = await runner.spawn("sh", ["-c", "echo via-fd-3 >&3; ls /proc/self/fd"], {
      stdio: ["ignore", "pipe", "pipe", "pipe"],
    });
    // CAST: a "pipe" entry past stderr is a duplex socket: readable here.
    const extra = child.stdio[3] as Readable;
    let fd3 = "";
    let listed = "";
    extra.on("data", (d: Buffer) => (fd3 += d.toString()));
    child.stdout?.on("data", (d: Buffer) => (listed += d.toString()));
    const drained = Promise.all([extra, child.stdout].map((r) => new Promise((res) => r?.once("close", res))));

    const status = await child.exited;
    await drained;

    assert.equal(status.code, 0);
    assert.equal(fd3, "via-fd-3\n");
    assert.deepEqual(
      listed.split("\n").filter((l) => l !== ""),
      ["0", "1", "2", "3", "4"],
    );
  });

  it("lets the parent write to an extra stdio entry too (a control channel both ways)", { timeout }, async () => {
    // The child echoes one line read from fd 3 back to fd 3, then exits.
    const child = await runner.spawn("sh", ["-c", "read line <&3; echo got-$line >&3"], {
      stdio: ["ignore", "ignore", "ignore", "pipe"],
    });
    // CAST: a "pipe" entry past stderr is a duplex socket.
    const control = child.stdio[3] as Duplex;
    let back = "";
    control.on("data", (d: Buffer) => (back += d.toString()));
    const closed = new Promise((res) => control.once("close", res));

    control.write("go\n");
    const status = await child.exited;
    control.end();
    await closed;

    assert.equal(status.code, 0);
    assert.equal(back, "got-go\n");
  });

  it("runs the program with the argv0 asked for", { timeout }, async () => {
    const r = await runner.run("sh", ["-c", 'echo "$0"'], { argv0: "my-hook" });

    assert.equal(r.stdout, "my-hook\n");
  });

  it("reports a program that does not exist as not installed, naming it", { timeout }, async () => {
    await assert.rejects(
      runner.run("crun-does-not-exist", []),
      kataError(Code.NotFound, "crun-does-not-exist is not installed"),
    );
    await assert.rejects(runner.spawn("/nonexistent/qemu", []), kataError(Code.NotFound, "/nonexistent/qemu"));
  });

  it("reports a missing launcher as NOT_FOUND telling how to build it", { timeout }, async () => {
    const broken = new NodeProcessRunner({ launcher: path.join(dir, "kata-ts-exec") });

    await assert.rejects(broken.run("true", []), kataError(Code.NotFound, "kata-ts-exec is missing", "npm run build"));
  });

  it("reports a missing working directory as such, not as a missing program", { timeout }, async () => {
    await assert.rejects(
      runner.run("true", [], { cwd: path.join(dir, "gone") }),
      kataError(Code.NotFound, "working directory", "gone"),
    );
  });
});

describe("NodeProcessRunner: output of a child that exits before anyone reads it", () => {
  // Node resumes an unread output stream with no reader once its child exits, dropping what it held; the
  // guest agent attaches its readers only after crun made the container, by which time a fast container
  // may be gone (seen as a lost `echo` under load).
  for (const [name, runner] of [
    ["without a launcher (the guest agent's)", new NodeProcessRunner()],
    ["with the launcher", new NodeProcessRunner({ launcher })],
  ] as const) {
    it(`keeps it for a late reader, ${name}`, { timeout }, async () => {
      const child = await runner.spawn("sh", ["-c", "echo out; echo err >&2"], { stdio: ["pipe", "pipe", "pipe"] });
      await child.exited;
      // Past the exit handler's next tick, where Node drops unread output.
      await new Promise((r) => setTimeout(r, 50));
      const read = async (s: Readable | null): Promise<string> => {
        let text = "";
        for await (const d of s ?? []) text += String(d);
        return text;
      };
      assert.deepEqual(await Promise.all([read(child.stdout), read(child.stderr)]), ["out\n", "err\n"]);
    });
  }
});
