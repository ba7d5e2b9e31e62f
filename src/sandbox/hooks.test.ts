// Hooks are real /bin/sh scripts in a temp dir, run by the real process runner: what a hook sees (stdin,
// env, argv, netns) is checked from inside it, through files it writes.

import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import type { LogFields, Logger } from "../base/log.js";
import type { Hook, State } from "../oci/spec.js";
import { NodeProcessRunner } from "../platform/process.js";
import { runHooks, runHooksWarnOnly } from "./hooks.js";

const state: State = { ociVersion: "1.0.2", id: "c1", status: "creating", pid: 4242, bundle: "/run/bundles/c1" };
// A test is its own composition root: it builds the real runner.
const deps = { runner: new NodeProcessRunner() };

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kata-ts-hooks-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes an executable /bin/sh script; the hook env is empty, so scripts name their tools by path. */
async function script(name: string, body: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, `#!/bin/sh\n${body}\n`);
  await chmod(p, 0o755);
  return p;
}

/** Alive means present in /proc and not a zombie waiting for a reaper. */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

class RecordingLogger implements Logger {
  readonly lines: { level: string; msg: string; fields: LogFields }[] = [];
  debug(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: "debug", msg, fields });
  }
  info(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: "info", msg, fields });
  }
  warn(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: "warn", msg, fields });
  }
  error(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: "error", msg, fields });
  }
  child(): Logger {
    return this;
  }
}

describe("runHooks", { timeout: 30_000 }, () => {
  it("gives each hook the state JSON on stdin, exactly its env, and its args with args[0] as argv0", async () => {
    const out = join(dir, "seen");
    // /bin/sh -c: $$ is the shell itself, whose argv and environ show what the hook was started with.
    const hook: Hook = {
      path: "/bin/sh",
      args: [
        "my-argv0",
        "-c",
        `/bin/cat > ${out}.stdin; /bin/cat /proc/$$/environ > ${out}.env; /bin/cat /proc/$$/cmdline > ${out}.argv`,
      ],
      env: ["A=1", "B=two words", "A=3"],
    };

    await runHooks(deps, "prestart", [hook], state);

    assert.deepEqual(JSON.parse(await readFile(`${out}.stdin`, "utf8")), state);
    assert.deepEqual((await readFile(`${out}.env`, "utf8")).split("\0").filter(Boolean).sort(), ["A=3", "B=two words"]);
    assert.equal((await readFile(`${out}.argv`, "utf8")).split("\0")[0], "my-argv0");
  });

  it("gives a hook without env an empty environment", async () => {
    const out = join(dir, "noenv");
    const hook = { path: "/bin/sh", args: ["sh", "-c", `/bin/cat /proc/$$/environ > ${out}`] };

    await runHooks(deps, "createRuntime", [hook], state);

    assert.equal(await readFile(out, "utf8"), "");
  });

  it("fails with the exit status, stdout and stderr of a failing hook, and runs no later hook", async () => {
    const failing = await script("fail.sh", "echo to-stdout; echo to-stderr >&2; exit 1");
    const marker = join(dir, "after-fail");
    const later = await script("later.sh", `/usr/bin/touch ${marker}`);

    await assert.rejects(
      runHooks(deps, "prestart", [{ path: failing }, { path: later }], state),
      (e: unknown) =>
        isKataError(e, Code.FailedPrecondition) &&
        e.message === `prestart hook ${failing} failed: exit code 1: stdout: to-stdout, stderr: to-stderr`,
    );
    assert.equal(existsSync(marker), false);
  });

  it("quotes only the tail of a long output", async () => {
    const noisy = await script("noisy.sh", "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done >&2; exit 2");

    await assert.rejects(
      runHooks(deps, "createContainer", [{ path: noisy }], state),
      (e: unknown) => isKataError(e) && e.message.length < 1500 && e.message.endsWith("line-1999"),
    );
  });

  it("kills a hook that outlives its timeout, together with the children it started", async () => {
    const pids = join(dir, "pids");
    const slow = await script(
      "slow.sh",
      `/bin/sleep 100 & echo $! > ${pids}.child; echo $$ > ${pids}.self; /bin/sleep 100`,
    );
    const started = Date.now();

    await assert.rejects(
      runHooks(deps, "prestart", [{ path: slow, timeout: 1 }], state),
      (e: unknown) => isKataError(e, Code.DeadlineExceeded) && e.message === `prestart hook ${slow} timed out after 1s`,
    );

    assert.ok(Date.now() - started < 10_000, "returned long after the timeout");
    for (const f of [`${pids}.self`, `${pids}.child`]) {
      const pid = Number((await readFile(f, "utf8")).trim());
      assert.equal(isAlive(pid), false, `${f}: pid ${String(pid)} is still alive`);
    }
  });

  it("names a hook binary that does not exist", async () => {
    const missing = join(dir, "no-such-hook");

    await assert.rejects(
      runHooks(deps, "poststart", [{ path: missing }], state),
      (e: unknown) => isKataError(e, Code.NotFound) && e.message === `poststart hook ${missing} does not exist`,
    );
  });

  it("refuses a hook that is not executable, a relative path, a zero timeout and a bad env entry", async () => {
    const plain = join(dir, "plain");
    await writeFile(plain, "#!/bin/sh\n");
    const ok = await script("ok.sh", "exit 0");

    const cases: [Hook, Code][] = [
      [{ path: plain }, Code.FailedPrecondition],
      [{ path: "bin/hook" }, Code.InvalidArgument],
      [{ path: ok, timeout: 0 }, Code.InvalidArgument],
      [{ path: ok, env: ["NOEQUALS"] }, Code.InvalidArgument],
    ];
    for (const [hook, code] of cases) {
      await assert.rejects(runHooks(deps, "prestart", [hook], state), (e: unknown) => isKataError(e, code));
    }
  });

  it("stops a running hook when the caller cancels", async () => {
    const slow = await script("cancel.sh", "/bin/sleep 100");
    const ctl = new AbortController();
    setTimeout(() => {
      ctl.abort();
    }, 200);

    await assert.rejects(runHooks(deps, "prestart", [{ path: slow }], state, { signal: ctl.signal }), (e: unknown) =>
      isKataError(e, Code.Cancelled),
    );
  });
});

describe("runHooksWarnOnly", { timeout: 30_000 }, () => {
  it("logs a failing hook as a warning and runs the next one", async () => {
    const failing = await script("warn-fail.sh", "exit 7");
    const marker = join(dir, "after-warn");
    const later = await script("warn-later.sh", `/usr/bin/touch ${marker}`);
    const logger = new RecordingLogger();

    await runHooksWarnOnly(deps, "poststop", [{ path: failing }, { path: later }], state, { logger });

    assert.equal(existsSync(marker), true);
    assert.deepEqual(
      logger.lines.map((l) => [l.level, l.msg, l.fields["path"]]),
      [["warn", "poststop hook failed", failing]],
    );
  });
});
