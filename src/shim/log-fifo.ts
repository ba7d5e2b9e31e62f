// The shim's log to containerd: containerd makes a fifo named `log` in the task's bundle before it
// starts the shim, holds it open for reading, and copies what arrives to its own log (shim v2
// contract). Logging must never stall the service: the fifo is opened and written non-blocking, a line
// that does not fit (containerd not reading, or gone) is dropped and counted, and the count is reported
// in the next line that gets through. Without a reader the open fails (ENXIO) and is retried, at most
// once per retry interval, so a restarted containerd, which opens the fifo again, gets the lines again.

import { closeSync, constants, fstatSync, openSync, writeSync } from "node:fs";
import { errnoOf } from "../base/errors.js";

/** Writes up to PIPE_BUF bytes to a pipe are atomic: a line arrives whole or not at all. */
export const pipeBufBytes = 4096;

export interface LogFifoOptions {
  /** Milliseconds between attempts to open the fifo while it cannot be (default 1000). */
  readonly retryMs?: number;
  readonly now?: () => number;
}

export class LogFifo {
  readonly #path: string;
  readonly #retryMs: number;
  readonly #now: () => number;
  #fd: number | undefined;
  #nextOpenAt = 0;
  #droppedSinceWrite = 0;
  #dropped = 0;
  #written = 0;
  /** Why the fifo is not open, for status lines (an errno code, or "not a fifo"). */
  #closedBecause = "not opened yet";

  constructor(path: string, opts: LogFifoOptions = {}) {
    this.#path = path;
    this.#retryMs = opts.retryMs ?? 1000;
    this.#now = opts.now ?? Date.now;
  }

  /** Lines dropped so far (no reader, a full pipe, a broken one). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Lines written whole so far (not counting drop notes). */
  get written(): number {
    return this.#written;
  }

  get closedBecause(): string | undefined {
    return this.#fd === undefined ? this.#closedBecause : undefined;
  }

  /** Writes one line (ending in "\n") or drops it; never blocks, never throws. */
  write(line: string): void {
    const fd = this.#open();
    if (fd === undefined) {
      this.#drop();
      return;
    }
    if (this.#droppedSinceWrite > 0) {
      const note = `{"level":"warn","msg":"kata-ts: log lines dropped (containerd was not reading its log fifo)","dropped":${this.#droppedSinceWrite}}\n`;
      if (!this.#writeWhole(fd, Buffer.from(note))) {
        this.#drop();
        return;
      }
      this.#droppedSinceWrite = 0;
    }
    if (this.#writeWhole(fd, fitLine(line))) this.#written++;
    else this.#drop();
  }

  close(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
    this.#closedBecause = "closed";
  }

  #drop(): void {
    this.#dropped++;
    this.#droppedSinceWrite++;
  }

  #open(): number | undefined {
    if (this.#fd !== undefined) return this.#fd;
    const now = this.#now();
    if (now < this.#nextOpenAt) return undefined;
    this.#nextOpenAt = now + this.#retryMs;
    let fd: number;
    try {
      fd = openSync(this.#path, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (e) {
      // ENXIO: no reader now; ENOENT: no fifo (yet). Either may change: try again later.
      this.#closedBecause = errnoOf(e) ?? "open failed";
      return undefined;
    }
    try {
      if (!fstatSync(fd).isFIFO()) {
        // Something else took the name: writing there would not reach containerd and could grow a file.
        closeSync(fd);
        this.#closedBecause = "not a fifo";
        this.#nextOpenAt = Number.POSITIVE_INFINITY;
        return undefined;
      }
    } catch (e) {
      closeSync(fd);
      this.#closedBecause = errnoOf(e) ?? "fstat failed";
      return undefined;
    }
    this.#fd = fd;
    return fd;
  }

  /** True when all of `buf` went in; on a broken pipe the fifo is closed, to be opened again later. */
  #writeWhole(fd: number, buf: Buffer): boolean {
    try {
      return writeSync(fd, buf) === buf.length;
    } catch (e) {
      const code = errnoOf(e);
      // EAGAIN: the pipe is full (containerd is behind): this line goes, the fifo stays.
      if (code === "EAGAIN") return false;
      // EPIPE (containerd closed it) or anything else: reopen later. Node ignores SIGPIPE.
      this.close();
      this.#closedBecause = code ?? "write failed";
      return false;
    }
  }
}

/** The line as bytes, cut to fit one atomic pipe write (ending in "\n" either way). */
export function fitLine(line: string): Buffer {
  const text = line.endsWith("\n") ? line : line + "\n";
  const buf = Buffer.from(text);
  if (buf.length <= pipeBufBytes) return buf;
  // A cut inside a multi-byte character leaves an invalid byte sequence at the end: harmless to a log.
  return Buffer.concat([buf.subarray(0, pipeBufBytes - 1), Buffer.from("\n")]);
}
