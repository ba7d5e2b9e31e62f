// Streams a newc archive to a file: headers are batched, file contents are copied from disk one
// chunk at a time, so a 100 MB node binary never sits in memory whole.

import { createReadStream } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { abortError } from "../base/async.js";
import { Code, KataError, wrap } from "../base/errors.js";
import { entryHeader, entrySizeBytes, orderEntries, pad4, trailer, type CpioEntry } from "./cpio.js";

const flushAtBytes = 1 << 20;

export interface CpioWriteOptions {
  readonly signal?: AbortSignal;
  /** Called after each entry and each copied chunk with the bytes written so far and the archive's size. */
  readonly onProgress?: (writtenBytes: number, totalBytes: number) => void;
}

/** The exact size of the archive `entries` encode to. */
export function cpioSizeBytes(entries: readonly CpioEntry[]): number {
  let total = trailer().length;
  orderEntries(entries).forEach((e, i) => {
    const size = entrySizeBytes(e);
    total += entryHeader(e, i + 1).length + size + pad4(size);
  });
  return total;
}

/** Small writes are gathered so 300 symlink headers cost a few syscalls, not 300. */
class BatchedFile {
  readonly #fh: FileHandle;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  writtenBytes = 0;

  constructor(fh: FileHandle) {
    this.#fh = fh;
  }

  async push(b: Uint8Array): Promise<void> {
    this.#pending.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    this.#pendingBytes += b.byteLength;
    this.writtenBytes += b.byteLength;
    if (this.#pendingBytes >= flushAtBytes) await this.flush();
  }

  /** Writes a big chunk (file contents) without copying it into the batch. */
  async pushLarge(b: Buffer): Promise<void> {
    await this.flush();
    await this.#writeAll(b);
    this.writtenBytes += b.length;
  }

  async flush(): Promise<void> {
    if (this.#pendingBytes === 0) return;
    const all = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    await this.#writeAll(all);
  }

  async #writeAll(b: Buffer): Promise<void> {
    let off = 0;
    while (off < b.length) {
      const { bytesWritten } = await this.#fh.write(b, off, b.length - off);
      off += bytesWritten;
    }
  }
}

async function copyFrom(
  out: BatchedFile,
  path: string,
  sizeBytes: number,
  opts: CpioWriteOptions,
  totalBytes: number,
): Promise<void> {
  const { signal } = opts;
  let copied = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: flushAtBytes })) {
    if (signal?.aborted === true) throw abortError(signal, `archive ${path}`);
    // CAST: a read stream without an encoding yields Buffers.
    const buf = chunk as Buffer;
    copied += buf.length;
    if (copied > sizeBytes) break;
    await out.pushLarge(buf);
    opts.onProgress?.(out.writtenBytes, totalBytes);
  }
  if (copied !== sizeBytes) {
    throw new KataError(
      Code.FailedPrecondition,
      `archive ${path}: expected ${sizeBytes} bytes, file changed to ${copied}+`,
    );
  }
}

/**
 * Writes the archive to `outPath` (created or truncated). Throws FAILED_PRECONDITION when a source
 * file's size differs from the size it was planned with, CANCELLED when `signal` aborts.
 */
export async function writeCpioFile(
  outPath: string,
  entries: readonly CpioEntry[],
  opts: CpioWriteOptions = {},
): Promise<{ readonly sizeBytes: number }> {
  const ordered = orderEntries(entries);
  const totalBytes = cpioSizeBytes(ordered);
  let fh: FileHandle;
  try {
    fh = await open(outPath, "w", 0o644);
  } catch (e) {
    throw wrap(e, `create ${outPath}`);
  }
  try {
    const out = new BatchedFile(fh);
    for (const [i, e] of ordered.entries()) {
      if (opts.signal?.aborted === true) throw abortError(opts.signal, `write ${outPath}`);
      await out.push(entryHeader(e, i + 1));
      const size = entrySizeBytes(e);
      if (e.kind === "file") {
        const src = e.source;
        if (src.kind === "path") await copyFrom(out, src.path, size, opts, totalBytes);
        else await out.push(src.data);
      } else if (e.kind === "symlink") {
        await out.push(Buffer.from(e.target, "utf8"));
      }
      await out.push(Buffer.alloc(pad4(size)));
      opts.onProgress?.(out.writtenBytes, totalBytes);
    }
    await out.push(trailer());
    await out.flush();
    if (out.writtenBytes !== totalBytes) {
      throw new KataError(Code.Internal, `write ${outPath}: wrote ${out.writtenBytes} bytes, planned ${totalBytes}`);
    }
    return { sizeBytes: out.writtenBytes };
  } finally {
    await fh.close();
  }
}
