// The guest serial console on the host, bounded: the driver reads QEMU's console chardev and appends to
// console.log, which is rotated to console.log.1 when full, so a VM's console costs at most twice the cap
// (it lives on a tmpfs: an unbounded log would let a guest fill host memory).

import { open, rename, rm, type FileHandle } from "node:fs/promises";
import type { Socket } from "node:net";
import { errnoOf } from "../../base/errors.js";

/** Default cap of console.log; console.log.1 holds up to as much again. */
export const defaultConsoleLogMaxBytes = 1024 * 1024;
/** Console bytes waiting for the file; beyond this they are dropped rather than slowing the reader. */
const defaultMaxQueuedBytes = 256 * 1024;

/**
 * Where a chunk of `chunkBytes` goes when the file holds `size` of at most `maxBytes`: `rotate` first when it
 * would overflow a non-empty file, then write it without its first `skip` bytes (a chunk longer than the
 * whole cap keeps only its end).
 */
export function planAppend(size: number, chunkBytes: number, maxBytes: number): { rotate: boolean; skip: number } {
  const rotate = size > 0 && size + chunkBytes > maxBytes;
  return { rotate, skip: Math.max(0, chunkBytes - maxBytes) };
}

export interface CappedLogOptions {
  readonly maxBytes?: number;
  readonly maxQueuedBytes?: number;
  /** The first write failure (later ones are only counted in `dropped`). */
  readonly onError?: (e: unknown) => void;
}

/**
 * An append-only file of at most maxBytes, rotated to `<path>.1`. push() never blocks and never throws: writes
 * happen in the background, one at a time; bytes that do not fit the queue or whose write fails are dropped
 * and counted.
 */
export class CappedLog {
  readonly path: string;
  readonly rotatedPath: string;
  readonly #maxBytes: number;
  readonly #maxQueuedBytes: number;
  readonly #onError: ((e: unknown) => void) | undefined;
  #fh: FileHandle | undefined;
  #size = 0;
  #queue: Buffer[] = [];
  #queued = 0;
  #draining: Promise<void> | undefined;
  #opened = false;
  #closed = false;
  #failed = false;
  /** Bytes lost: the queue was full, the write failed, or the log was already closed. */
  dropped = 0;

  constructor(path: string, opts: CappedLogOptions = {}) {
    this.path = path;
    this.rotatedPath = `${path}.1`;
    this.#maxBytes = opts.maxBytes ?? defaultConsoleLogMaxBytes;
    this.#maxQueuedBytes = opts.maxQueuedBytes ?? defaultMaxQueuedBytes;
    this.#onError = opts.onError;
  }

  push(chunk: Buffer): void {
    if (this.#closed || this.#queued + chunk.length > this.#maxQueuedBytes) {
      this.dropped += chunk.length;
      return;
    }
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    this.#draining ??= this.#drain();
  }

  /** Resolves once everything pushed so far is written or dropped. Never rejects. */
  async flush(): Promise<void> {
    await this.#draining;
  }

  /** Flushes, then closes the file; later pushes are dropped. Never rejects. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
    const fh = this.#fh;
    this.#fh = undefined;
    await fh?.close().catch((e: unknown) => {
      this.#report(e);
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = Buffer.concat(this.#queue, this.#queued);
      this.#queue = [];
      this.#queued = 0;
      try {
        await this.#append(batch);
      } catch (e) {
        this.dropped += batch.length;
        this.#report(e);
      }
    }
    this.#draining = undefined;
  }

  async #append(chunk: Buffer): Promise<void> {
    const { rotate, skip } = planAppend(this.#size, chunk.length, this.#maxBytes);
    if (rotate) await this.#rotate();
    if (this.#fh === undefined) {
      // An earlier VM's rotated console must not show up in this one's tail.
      if (!this.#opened) await rm(this.rotatedPath, { force: true });
      this.#opened = true;
      // Truncated: what a failed rotation left behind would otherwise be outside the cap.
      this.#fh = await open(this.path, "w", 0o600);
      this.#size = 0;
    }
    const data = chunk.subarray(skip);
    await this.#fh.writeFile(data);
    this.#size += data.length;
  }

  async #rotate(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    await fh?.close();
    await rename(this.path, this.rotatedPath);
  }

  #report(e: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#onError?.(e);
  }
}

/** Bytes read from the end of each file for a tail; far more than the few lines an error message shows. */
const tailReadBytes = 64 * 1024;

/**
 * The last `lines` non-blank lines of a CappedLog's files (the end of `<path>.1` first, then `path`), or
 * undefined when neither exists.
 */
export async function readLogTail(path: string, lines: number): Promise<string | undefined> {
  const current = await readEnd(path);
  const enough = current !== undefined && nonBlankLines(current).length >= lines;
  const older = enough ? undefined : await readEnd(`${path}.1`);
  if (current === undefined && older === undefined) return undefined;
  return nonBlankLines((older ?? "") + (current ?? ""))
    .slice(-lines)
    .join("\n");
}

function nonBlankLines(text: string): string[] {
  return text
    .replace(/\r/g, "")
    .split("\n")
    .filter((l) => l.trim() !== "");
}

async function readEnd(path: string): Promise<string | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return undefined;
    throw e;
  }
  try {
    const size = (await fh.stat()).size;
    const start = Math.max(0, size - tailReadBytes);
    const buf = Buffer.alloc(size - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    return buf.subarray(0, bytesRead).toString("utf8");
  } finally {
    await fh.close();
  }
}

/** A console line longer than this is cut (the guest decides what it prints; the host log must stay sane). */
export const maxConsoleLineBytes = 4096;

/**
 * Console bytes to lines: complete lines (without "\n" or a trailing "\r") go to `onLine`; a line that
 * grows past maxBytes is handed over cut, with "[cut]", and the rest of it up to its newline is skipped.
 */
export class LineSplitter {
  readonly #onLine: (line: string) => void;
  readonly #maxBytes: number;
  #partial: Buffer[] = [];
  #partialBytes = 0;
  #skipping = false;

  constructor(onLine: (line: string) => void, maxBytes = maxConsoleLineBytes) {
    this.#onLine = onLine;
    this.#maxBytes = maxBytes;
  }

  push(chunk: Buffer): void {
    let rest = chunk;
    for (;;) {
      const nl = rest.indexOf(0x0a);
      const piece = nl < 0 ? rest : rest.subarray(0, nl);
      if (!this.#skipping) {
        const room = this.#maxBytes - this.#partialBytes;
        this.#partial.push(piece.subarray(0, room));
        this.#partialBytes += Math.min(piece.length, room);
        if (piece.length > room) {
          this.#emit(" [cut]");
          this.#skipping = true;
        }
      }
      if (nl < 0) return;
      if (!this.#skipping) this.#emit("");
      this.#skipping = false;
      rest = rest.subarray(nl + 1);
    }
  }

  #emit(suffix: string): void {
    const line = Buffer.concat(this.#partial, this.#partialBytes).toString("utf8").replace(/\r$/, "");
    this.#partial = [];
    this.#partialBytes = 0;
    this.#onLine(line + suffix);
  }
}

/**
 * Copies QEMU's console socket into `sink`, and its lines to `onLine` when given. The socket is never paused:
 * a full socket buffer would make QEMU's serial device wait, so a slow log drops bytes instead (CappedLog
 * counts them).
 */
export function relayConsole(
  socket: Socket,
  sink: CappedLog,
  onError: (e: Error) => void,
  onLine?: (line: string) => void,
): void {
  const lines = onLine === undefined ? undefined : new LineSplitter(onLine);
  socket.on("data", (chunk: Buffer) => {
    sink.push(chunk);
    lines?.push(chunk);
  });
  socket.on("error", onError);
}
