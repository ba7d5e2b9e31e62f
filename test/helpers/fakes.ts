// Shared test helpers: an error matcher for assert.rejects/throws and a controllable child process.

import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { deferred, type Deferred } from "../../src/base/async.js";
import { isKataError, type Code } from "../../src/base/errors.js";
import type { Child, ExitStatus } from "../../src/platform/process.js";

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
 * A child process whose stdio are in-memory pipes and whose exit the test decides. `kill` behaves
 * like a process that dies of the signal (it exits, once).
 */
export class FakeChild implements Child {
  static #nextPid = 1000;
  readonly pid = FakeChild.#nextPid++;
  readonly stdin = new PassThrough();
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
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

  /** Delivers `signal` unless the process is gone (then, as kill(2) with ESRCH, nothing happens). */
  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.#done) return;
    this.signals.push(signal);
    this.exit({ code: null, signal });
  }
}
