import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import { trimKernel } from "./kernel-trim.js";

interface Seg {
  readonly type: number;
  readonly offset: number;
  readonly filesz: number;
  readonly memsz: number;
}

/** A 64-bit little-endian ELF: header, program headers, `body` from `bodyAt`, section headers after it. */
function elf(segs: readonly Seg[], body: Buffer, bodyAt: number): Buffer {
  const shoff = bodyAt + body.length;
  const out = Buffer.alloc(shoff + 64 * 3);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  out.writeBigUInt64LE(64n, 0x20);
  out.writeBigUInt64LE(BigInt(shoff), 0x28);
  out.writeUInt16LE(56, 0x36);
  out.writeUInt16LE(segs.length, 0x38);
  out.writeUInt16LE(64, 0x3a);
  out.writeUInt16LE(3, 0x3c);
  out.writeUInt16LE(2, 0x3e);
  segs.forEach((s, i) => {
    const at = 64 + i * 56;
    out.writeUInt32LE(s.type, at);
    out.writeBigUInt64LE(BigInt(s.offset), at + 8);
    out.writeBigUInt64LE(BigInt(s.filesz), at + 32);
    out.writeBigUInt64LE(BigInt(s.memsz), at + 40);
  });
  body.copy(out, bodyAt);
  return out;
}

const filesz = (b: Buffer, i: number): number => Number(b.readBigUInt64LE(64 + i * 56 + 32));
const memsz = (b: Buffer, i: number): number => Number(b.readBigUInt64LE(64 + i * 56 + 40));

describe("trimKernel", () => {
  it("leaves each loaded segment's zero tail to the loader, drops the section headers and cuts the file", () => {
    // Segment 0: 20 bytes of code then 12 zeros; segment 1 (last in the file): 3 bytes then 200 zeros.
    const body = Buffer.alloc(32 + 203);
    body.fill(0xaa, 0, 20);
    body.fill(0xbb, 32, 35);
    const input = elf(
      [
        { type: 1, offset: 256, filesz: 32, memsz: 32 },
        { type: 4, offset: 256, filesz: 8, memsz: 8 }, // a note inside segment 0
        { type: 1, offset: 288, filesz: 203, memsz: 203 },
      ],
      body,
      256,
    );
    const before = Buffer.from(input);
    const { bytes, segments } = trimKernel(input, "vmlinux");
    assert.equal(filesz(bytes, 0), 24, "20 bytes rounded up to 8");
    assert.equal(memsz(bytes, 0), 32, "the memory size is kept: the loader zero-fills the rest");
    assert.equal(filesz(bytes, 1), 8, "a note is not trimmed");
    assert.equal(filesz(bytes, 2), 8);
    assert.equal(memsz(bytes, 2), 203);
    assert.deepEqual(segments, [
      { index: 0, fileBytesBefore: 32, fileBytesAfter: 24 },
      { index: 2, fileBytesBefore: 203, fileBytesAfter: 8 },
    ]);
    assert.equal(bytes.length, 288 + 8, "nothing after the last byte a segment names");
    assert.equal(bytes.readBigUInt64LE(0x28), 0n, "no section header table");
    assert.equal(bytes.readUInt16LE(0x3c), 0);
    assert.equal(bytes.readUInt16LE(0x3e), 0);
    assert.deepEqual(bytes.subarray(256, 256 + 20), before.subarray(256, 256 + 20), "the code bytes are kept");
    assert.deepEqual(input, before, "the caller's buffer is not rewritten");
  });

  it("never raises a segment's file size, and keeps a segment with no zero tail whole", () => {
    const body = Buffer.alloc(13, 0xcc);
    const { bytes, segments } = trimKernel(elf([{ type: 1, offset: 128, filesz: 13, memsz: 13 }], body, 128), "k");
    assert.equal(filesz(bytes, 0), 13);
    assert.deepEqual(segments, []);
    assert.equal(bytes.length, 128 + 13);
  });

  it("refuses what is not a 64-bit little-endian ELF or whose headers point outside it, naming the file", () => {
    const good = elf([{ type: 1, offset: 128, filesz: 8, memsz: 8 }], Buffer.alloc(8, 1), 128);
    const cases: [string, Buffer, RegExp][] = [
      ["short", Buffer.alloc(10), /not an ELF file/],
      ["32-bit", Buffer.from(good).fill(1, 4, 5), /64-bit little-endian/],
      ["big-endian", Buffer.from(good).fill(2, 5, 6), /64-bit little-endian/],
      ["segment past the end", Buffer.from(good).fill(0xff, 64 + 32, 64 + 36), /segment 0 ends past/],
      [
        "table past the end",
        (() => {
          const b = Buffer.from(good);
          b.writeUInt16LE(60, 0x38);
          return b;
        })(),
        /program header table outside/,
      ],
      [
        "no segments",
        (() => {
          const b = Buffer.from(good);
          b.writeUInt16LE(0, 0x38);
          return b;
        })(),
        /program header table of 0 entries/,
      ],
    ];
    for (const [what, bytes, message] of cases) {
      assert.throws(
        () => trimKernel(bytes, "/img/vmlinux"),
        (e: unknown) =>
          isKataError(e, Code.FailedPrecondition) && message.test(e.message) && e.message.includes("/img/vmlinux"),
        what,
      );
    }
  });
});
