// The agent's long-lived `kata-ts-reseed --serve` (native/kata-ts-reseed.c): sets the clock and reseeds
// the CRNG for a template clone without spawning a process per call. A spawn from the agent forks the
// whole Node process, 0.1-0.3 s each under TCG with a clone's empty translation cache. Started at the
// first call: in the template that is its warm-up, so every clone inherits the running helper with the
// template's memory. One request at a time; a helper that died or missed its deadline is killed and
// started again at the next call.

import { spawn as nodeSpawn, type ChildProcessByStdio } from "node:child_process";
import { Buffer } from "node:buffer";
import type { Readable, Writable } from "node:stream";
import { Code, KataError } from "../base/errors.js";

type HelperProcess = ChildProcessByStdio<Writable, Readable, Readable>;
export type SpawnHelper = (file: string, args: readonly string[]) => HelperProcess;

const defaultSpawn: SpawnHelper = (file, args) => nodeSpawn(file, args, { stdio: ["pipe", "pipe", "pipe"] });

/** The helper's own limit on a request's payload (MAX_SEED). */
export const maxHelperPayloadBytes = 4096;
/** One call's deadline: a helper stuck in the kernel must not hold every later call for ever. */
const callDeadlineMs = 10_000;
/** An answer's message is short (an errno string); more than this is not our helper talking. */
const maxAnswerMessageBytes = 4096;

/** One request's frame: op byte, 4-byte little-endian length, payload. */
export function helperRequest(op: "R" | "T", payload: Uint8Array): Buffer {
  if (payload.length > maxHelperPayloadBytes) {
    throw new KataError(
      Code.InvalidArgument,
      `helper request: ${payload.length} bytes, at most ${maxHelperPayloadBytes}`,
    );
  }
  const head = Buffer.alloc(5);
  head.write(op, 0, "latin1");
  head.writeUInt32LE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** SetGuestDateTime's payload: seconds and microseconds, little-endian int64 each. */
export function clockPayload(sec: bigint, usec: bigint): Buffer {
  if (usec < 0n || usec >= 1_000_000n) throw new KataError(Code.InvalidArgument, `clock: usec ${usec} out of range`);
  const b = Buffer.alloc(16);
  b.writeBigInt64LE(sec, 0);
  b.writeBigInt64LE(usec, 8);
  return b;
}

/** The first whole answer in `buf`: undefined until it is all there. */
export function parseAnswer(
  buf: Buffer,
): { readonly ok: boolean; readonly message: string; readonly rest: Buffer } | undefined {
  if (buf.length < 5) return undefined;
  const status = buf[0];
  const n = buf.readUInt32LE(1);
  if ((status !== 0 && status !== 1) || n > maxAnswerMessageBytes) {
    throw new KataError(Code.Internal, `kata-ts-reseed --serve: malformed answer (status ${status}, ${n} bytes)`);
  }
  if (buf.length < 5 + n) return undefined;
  return { ok: status === 0, message: buf.subarray(5, 5 + n).toString("utf8"), rest: buf.subarray(5 + n) };
}

export class ClockSeedHelper {
  readonly #file: string;
  readonly #spawn: SpawnHelper;
  #proc: HelperProcess | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  readonly #deadlineMs: number;

  constructor(file: string, opts: { spawn?: SpawnHelper; deadlineMs?: number } = {}) {
    this.#file = file;
    this.#spawn = opts.spawn ?? defaultSpawn;
    this.#deadlineMs = opts.deadlineMs ?? callDeadlineMs;
  }

  reseed(seed: Uint8Array): Promise<void> {
    if (seed.length === 0) return Promise.reject(new KataError(Code.InvalidArgument, "reseed: empty seed"));
    return this.#call("reseed", helperRequest("R", seed));
  }

  setTime(sec: bigint, usec: bigint): Promise<void> {
    return this.#call("set the clock", helperRequest("T", clockPayload(sec, usec)));
  }

  /** Stops the helper (tests; the agent keeps it for its life). */
  close(): void {
    this.#proc?.stdin.end();
    this.#proc = undefined;
  }

  #call(what: string, frame: Buffer): Promise<void> {
    const run = this.#queue.then(() => this.#exchange(what, frame));
    // The queue only orders calls: each caller gets its own call's failure.
    this.#queue = run.then(
      () => undefined,
      (e: unknown) => e,
    );
    return run;
  }

  #exchange(what: string, frame: Buffer): Promise<void> {
    const proc = this.#running();
    return new Promise<void>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      let stderr = "";
      const timer = setTimeout(() => {
        done(
          new KataError(
            Code.DeadlineExceeded,
            `${what}: no answer from kata-ts-reseed --serve in ${this.#deadlineMs} ms`,
          ),
        );
      }, this.#deadlineMs);
      const done = (err?: KataError, broken = true): void => {
        clearTimeout(timer);
        proc.stdout.off("data", onData);
        proc.stderr.off("data", onErr);
        proc.off("exit", onExit);
        proc.off("error", onExit);
        proc.stdin.off("error", onExit);
        if (err === undefined) {
          resolve();
          return;
        }
        if (broken) {
          // Whatever state it is in, the next call gets a fresh one.
          if (this.#proc === proc) this.#proc = undefined;
          proc.kill("SIGKILL");
        }
        reject(err);
      };
      const onData = (chunk: Buffer): void => {
        buf = Buffer.concat([buf, chunk]);
        let a;
        try {
          a = parseAnswer(buf);
        } catch (e) {
          done(e instanceof KataError ? e : new KataError(Code.Internal, String(e)));
          return;
        }
        if (a === undefined) return;
        if (a.rest.length > 0) {
          done(new KataError(Code.Internal, `kata-ts-reseed --serve: ${a.rest.length} bytes nobody asked for`));
        } else if (a.ok) {
          done();
        } else {
          // The helper is fine: the kernel refused this one request.
          done(new KataError(Code.Internal, `${what}: ${a.message}`), false);
        }
      };
      const onErr = (chunk: Buffer): void => {
        stderr = (stderr + chunk.toString("utf8")).slice(-1000);
      };
      const onExit = (): void => {
        done(new KataError(Code.Internal, `${what}: kata-ts-reseed --serve ended: ${stderr.trim() || "no message"}`));
      };
      proc.stdout.on("data", onData);
      proc.stderr.on("data", onErr);
      proc.once("exit", onExit);
      proc.once("error", onExit);
      proc.stdin.once("error", onExit);
      proc.stdin.write(frame);
    });
  }

  #running(): HelperProcess {
    if (this.#proc !== undefined && this.#proc.exitCode === null && this.#proc.signalCode === null) return this.#proc;
    const proc = this.#spawn(this.#file, ["--serve"]);
    // A helper that cannot start reports 'error' (the call waiting on it sees it); never unhandled.
    proc.on("error", () => undefined);
    this.#proc = proc;
    return proc;
  }
}
