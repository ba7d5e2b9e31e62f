// QMP framing: JSON documents one per line. The decoder bounds what an untrusted-ish QEMU can make us buffer.

import { Code, KataError } from "../../../base/errors.js";

/** A JSON line longer than this closes the client. QEMU's largest answers (query-qmp-schema) are ~200 KB. */
export const defaultMaxLineBytes = 1024 * 1024;

/** Splits a byte stream into lines, refusing (throwing) once a line exceeds maxLineBytes. */
export class LineDecoder {
  readonly #maxLineBytes: number;
  #parts: Buffer[] = [];
  #size = 0;

  constructor(maxLineBytes: number) {
    this.#maxLineBytes = maxLineBytes;
  }

  /** The complete lines in `chunk` (without "\n" or "\r\n"); throws INTERNAL on an oversize line. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let rest = chunk;
    for (let nl = rest.indexOf(0x0a); nl >= 0; nl = rest.indexOf(0x0a)) {
      this.#take(rest.subarray(0, nl));
      let line = Buffer.concat(this.#parts, this.#size);
      if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
      if (line.length > this.#maxLineBytes) this.#tooLong();
      lines.push(line.toString("utf8"));
      this.#parts = [];
      this.#size = 0;
      rest = rest.subarray(nl + 1);
    }
    this.#take(rest);
    return lines;
  }

  #take(bytes: Buffer): void {
    // Checked before buffering, so a peer that never sends "\n" costs at most maxLineBytes. One byte more is
    // allowed only while it is the "\r" of QEMU's "\r\n".
    const size = this.#size + bytes.length;
    const last = bytes.length > 0 ? bytes.at(-1) : this.#parts.at(-1)?.at(-1);
    if (size > this.#maxLineBytes + 1 || (size === this.#maxLineBytes + 1 && last !== 0x0d)) this.#tooLong();
    if (bytes.length > 0) this.#parts.push(bytes);
    this.#size += bytes.length;
  }

  #tooLong(): never {
    throw new KataError(Code.Internal, `qmp: protocol error: line longer than ${this.#maxLineBytes} bytes`);
  }
}
