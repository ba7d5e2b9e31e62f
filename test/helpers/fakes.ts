// Shared test helpers: an error matcher for assert.rejects/throws, a controllable child process, the
// pids fakes give their processes, a scripted ProcessRunner, and loggers that keep their lines.

import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { deferred, type Deferred } from "../../src/base/async.js";
import { Code, KataError, describeError, isKataError } from "../../src/base/errors.js";
import type { LogFields, Logger, LogLevel } from "../../src/base/log.js";
import type { Child, ExitStatus, ProcessRunner, RunOptions, RunResult } from "../../src/platform/process.js";

/**
 * A validator for assert.rejects/assert.throws: the error is a KataError with `code` whose message
 * matches every pattern (a string must appear verbatim). Failing checks say what was thrown instead.
 */
export function kataError(code: Code, ...patterns: (RegExp | string)[]): (e: unknown) => true {
  return (e: unknown) => {
    assert.ok(isKataError(e), `expected a KataError, got ${String(e)}`);
    assert.equal(e.code, code, `code of "${e.message}"`);
    for (const p of patterns) {
      if (typeof p === "string") assert.ok(e.message.includes(p), `"${e.message}" should contain "${p}"`);
      else assert.match(e.message, p);
    }
    return true;
  };
}

/**
 * As kataError, but the patterns are matched against the whole cause chain (describeError), for errors
 * that callers wrap with the name of their operation.
 */
export function kataErrorChain(code: Code, ...patterns: (RegExp | string)[]): (e: unknown) => true {
  return (e: unknown) => {
    assert.ok(isKataError(e), `expected a KataError, got ${String(e)}`);
    const text = describeError(e);
    assert.equal(e.code, code, `code of "${text}"`);
    for (const p of patterns) {
      if (typeof p === "string") assert.ok(text.includes(p), `"${text}" should contain "${p}"`);
      else assert.match(text, p);
    }
    return true;
  };
}

/**
 * PID_MAX_LIMIT on 64-bit Linux (2^22): pid_max cannot be set above it, so no process ever has a pid at
 * or over it. Fakes number their processes from here, so a stray kill(2) of one gets ESRCH and its
 * /proc/<pid> never exists (stale cleanup, which checks /proc/<pid>/cmdline first, never matches one).
 */
export const firstFakePid = 4_194_304;
let lastFakePid = firstFakePid - 1;

/** A pid that no real process can have (see firstFakePid), different on every call. */
export function nextFakePid(): number {
  return ++lastFakePid;
}

/**
 * A child process whose stdio are in-memory pipes and whose exit the test decides. `kill` behaves
 * like a process that dies of the signal (it exits, once).
 */
export class FakeChild implements Child {
  readonly pid = nextFakePid();
  readonly stdin = new PassThrough();
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdio = [this.stdin, this.stdout, this.stderr];
  readonly #exit: Deferred<ExitStatus> = deferred<ExitStatus>();
  readonly exited: Promise<ExitStatus> = this.#exit.promise;
  #done = false;
  /** Signals delivered through kill() while it ran, in order. */
  readonly signals: NodeJS.Signals[] = [];

  /** Ends the process: closes its outputs, then reports the status. */
  exit(status: ExitStatus): void {
    if (this.#done) return;
    this.#done = true;
    this.stdout.end();
    this.stderr.end();
    this.#exit.resolve(status);
  }

  get hasExited(): boolean {
    return this.#done;
  }

  /** Whether unref() was called (the owner let its process exit while this one runs). */
  unrefed = false;

  unref(): void {
    this.unrefed = true;
  }

  /** Delivers `signal` unless the process is gone (then, as kill(2) with ESRCH, nothing happens). */
  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.#done) return;
    this.signals.push(signal);
    this.exit({ code: null, signal });
  }
}

/**
 * How a ScriptedRunner call ends: a result (missing fields: exit 0, no output), "hang" for a child that
 * runs until the call's signal aborts it (then it dies of SIGKILL), or "stuck" for one that never ends,
 * not even when killed (a process in D state).
 */
export type ScriptedReply = Partial<RunResult> | "hang" | "stuck";

/** A ProcessRunner whose `run` answers from a script and records every call; `spawn` is not scripted. */
export class ScriptedRunner implements ProcessRunner {
  readonly calls: { file: string; args: string[]; signal: AbortSignal | undefined }[] = [];
  readonly #script: (file: string, args: readonly string[]) => ScriptedReply | Promise<ScriptedReply>;

  constructor(script: (file: string, args: readonly string[]) => ScriptedReply | Promise<ScriptedReply>) {
    this.#script = script;
  }

  /** The argument lists of every call, for asserting what ran. */
  get argv(): string[][] {
    return this.calls.map((c) => [c.file, ...c.args]);
  }

  async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    this.calls.push({ file, args: [...args], signal: opts.signal });
    const reply = await this.#script(file, args);
    if (reply === "stuck") return new Promise<RunResult>(() => undefined);
    if (reply === "hang") {
      const signal = opts.signal;
      return new Promise<RunResult>((resolve) => {
        const die = (): void => {
          resolve({ code: null, signal: "SIGKILL", stdout: "", stderr: "" });
        };
        if (signal?.aborted === true) die();
        else signal?.addEventListener("abort", die, { once: true });
      });
    }
    return { code: 0, signal: null, stdout: "", stderr: "", ...reply };
  }

  spawn(file: string): Promise<Child> {
    return Promise.reject(new KataError(Code.Unimplemented, `ScriptedRunner: spawn ${file} is not scripted`));
  }
}

/** A Logger that keeps every entry (a child's too, with the child's fields merged in). */
export class RecordingLogger implements Logger {
  readonly entries: { level: LogLevel; msg: string; fields: LogFields }[];
  readonly #fields: LogFields;

  constructor(entries: { level: LogLevel; msg: string; fields: LogFields }[] = [], fields: LogFields = {}) {
    this.entries = entries;
    this.#fields = fields;
  }

  debug(msg: string, fields: LogFields = {}): void {
    this.entries.push({ level: "debug", msg, fields: { ...this.#fields, ...fields } });
  }
  info(msg: string, fields: LogFields = {}): void {
    this.entries.push({ level: "info", msg, fields: { ...this.#fields, ...fields } });
  }
  warn(msg: string, fields: LogFields = {}): void {
    this.entries.push({ level: "warn", msg, fields: { ...this.#fields, ...fields } });
  }
  error(msg: string, fields: LogFields = {}): void {
    this.entries.push({ level: "error", msg, fields: { ...this.#fields, ...fields } });
  }
  child(fields: LogFields): Logger {
    return new RecordingLogger(this.entries, { ...this.#fields, ...fields });
  }
}

/** Keeps log lines ("level msg {fields}") in `lines`, for a fake VM's console or a test's assertions. */
export class LineLogger implements Logger {
  readonly lines: string[];
  readonly #fields: LogFields;
  readonly #debug: boolean;

  /** Debug lines are dropped unless `debug` is set (a real agent logs at info by default). */
  constructor(lines: string[] = [], opts: { fields?: LogFields; debug?: boolean } = {}) {
    this.lines = lines;
    this.#fields = opts.fields ?? {};
    this.#debug = opts.debug === true;
  }

  #log(level: string, msg: string, fields: LogFields | undefined): void {
    const all = { ...this.#fields, ...fields };
    const text = JSON.stringify(all, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v));
    this.lines.push(`${level} ${msg}${text === "{}" ? "" : " " + text}`);
  }

  debug(msg: string, fields?: LogFields): void {
    if (this.#debug) this.#log("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#log("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#log("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#log("error", msg, fields);
  }
  child(fields: LogFields): Logger {
    return new LineLogger(this.lines, { fields: { ...this.#fields, ...fields }, debug: this.#debug });
  }
}
