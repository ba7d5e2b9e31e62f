import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError, ScriptedRunner } from "../../test/helpers/fakes.js";
import { CommandMounter, defaultMountTimeoutMs } from "./mount.js";

describe("CommandMounter", () => {
  it("runs mount(8) and umount(8) with the request's arguments", async () => {
    const runner = new ScriptedRunner(() => ({}));
    const m = new CommandMounter(runner, { mount: "/bin/mount", umount: "/bin/umount" });

    await m.mount({ source: "tmpfs", target: "/t", fstype: "tmpfs", options: ["size=1m", "mode=0755"] });
    await m.bind("/a", "/b", { recursive: true });
    await m.remountReadonly("/b");
    await m.setPropagation("/b", "slave");
    await m.unmount("/b", { detach: true });
    await m.unmount("/t");

    assert.deepEqual(runner.argv, [
      ["/bin/mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", "/t"],
      ["/bin/mount", "--rbind", "/a", "/b"],
      ["/bin/mount", "-o", "remount,bind,ro", "/b"],
      ["/bin/mount", "--make-slave", "/b"],
      ["/bin/umount", "-l", "/b"],
      ["/bin/umount", "/t"],
    ]);
  });

  it("gives every command a deadline, 10 s unless configured", async () => {
    const runner = new ScriptedRunner(() => ({}));

    await new CommandMounter(runner).bind("/a", "/b");

    assert.equal(defaultMountTimeoutMs, 10_000);
    assert.ok(runner.calls.every((c) => c.signal !== undefined));
  });

  it("fails a mount that outlives its deadline with DEADLINE_EXCEEDED naming the command", async () => {
    const runner = new ScriptedRunner(() => "hang");
    const m = new CommandMounter(runner, { timeoutMs: 20 });

    await assert.rejects(
      m.mount({ source: "srv:/x", target: "/mnt", fstype: "nfs" }),
      kataError(Code.DeadlineExceeded, "mount -t nfs srv:/x /mnt: timed out"),
    );
    assert.equal(runner.calls[0]?.signal?.aborted, true);
  });

  it("does not wait for an umount that ignores the kill past its deadline", async () => {
    const m = new CommandMounter(new ScriptedRunner(() => "stuck"), { timeoutMs: 20 });

    await assert.rejects(m.unmount("/mnt"), kataError(Code.DeadlineExceeded, "umount /mnt: timed out"));
  });

  it("fails CANCELLED when the caller's signal aborts first, for every method", async () => {
    const m = new CommandMounter(new ScriptedRunner(() => "hang"));
    const calls: ((s: AbortSignal) => Promise<void>)[] = [
      (signal) => m.mount({ source: "a", target: "/b" }, signal),
      (signal) => m.bind("/a", "/b", { signal }),
      (signal) => m.remountReadonly("/b", signal),
      (signal) => m.setPropagation("/b", "private", signal),
      (signal) => m.unmount("/b", { signal }),
    ];

    for (const call of calls) {
      const ctl = new AbortController();
      const p = call(ctl.signal);
      ctl.abort();
      await assert.rejects(p, kataError(Code.Cancelled, /^u?mount .*: cancelled$/));
    }
  });

  it("reports a failed command with its exit and stderr", async () => {
    const m = new CommandMounter(new ScriptedRunner(() => ({ code: 32, stderr: "umount: /x: not mounted.\n" })));

    await assert.rejects(
      m.unmount("/x"),
      kataError(Code.Internal, "umount /x: exit code 32: umount: /x: not mounted."),
    );
  });
});
