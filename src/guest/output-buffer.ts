// Holds a process's stdout or stderr until the host reads it (ReadStdout/ReadStderr). The host polls
// with a length; a read waits for data and returns an empty chunk only at end of stream. Reading from
// the child pauses while the buffer is full, so a fast writer cannot exhaust guest memory.

import type { Readable } from "node:stream";
import { deferred, raceAbort, type Deferred } from "../base/async.js";

export class OutputBuffer {
  readonly #chunks: Buffer[] = [];
  #size = 0;
  #ended = false;
  #waiter: Deferred<undefined> | undefined;
  readonly #source: Readable | undefined;
  readonly #highWaterBytes: number;

  constructor(source: Readable | null, highWaterBytes = 1 << 20) {
    this.#highWaterBytes = highWaterBytes;
    if (source === null) {
      this.#ended = true;
      return;
    }
    this.#source = source;
    source.on("data", (d: Buffer) => {
      this.#chunks.push(d);
      this.#size += d.length;
      if (this.#size >= this.#highWaterBytes) source.pause();
      this.#wake();
    });
    const end = (): void => {
      this.#ended = true;
      this.#wake();
    };
    source.once("end", end);
    source.once("close", end);
    source.once("error", end);
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.resolve(undefined);
  }

  get ended(): boolean {
    return this.#ended && this.#size === 0;
  }

  /** Up to `maxBytes` bytes; waits for data; an empty result means end of stream. */
  async read(maxBytes: number, signal?: AbortSignal): Promise<Uint8Array> {
    while (this.#size === 0 && !this.#ended) {
      this.#waiter ??= deferred<undefined>();
      await raceAbort(this.#waiter.promise, signal, "read stream");
    }
    if (this.#size === 0) return new Uint8Array(0);
    const out: Buffer[] = [];
    let n = 0;
    while (n < maxBytes && this.#chunks.length > 0) {
      // CAST: length checked by the loop condition.
      const head = this.#chunks[0] as Buffer;
      const take = Math.min(head.length, maxBytes - n);
      out.push(head.subarray(0, take));
      n += take;
      if (take === head.length) this.#chunks.shift();
      else this.#chunks[0] = head.subarray(take);
    }
    this.#size -= n;
    if (this.#size < this.#highWaterBytes && this.#source?.isPaused() === true) this.#source.resume();
    // CAST: out has exactly one element in that branch.
    return out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
  }
}
