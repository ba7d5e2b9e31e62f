// The guest kernel as QEMU loads it, without the zeros it does not need to read. The vmlinux cut out of
// Debian's bzImage stores its last segment's .bss, .brk and .init.scratch as ~23 MB of zero bytes
// (p_filesz = p_memsz). QEMU's ELF loader maps the whole file and keeps every segment's file bytes for
// the VM's life (to reload them on a guest reset), so each VM held ~57 MiB of the file, 20 MiB of it
// zeros. A segment whose p_filesz stops before its zero tail is zero-filled by the loader instead (as a
// linker writes .bss), so what the guest sees is the same. The section headers go too: only the program
// headers are read to boot, and a table past the cut would point outside the file.

import { Code, KataError } from "../base/errors.js";

const ptNull = 0;
const ptLoad = 1;
const ehdrBytes = 64;
const phdrBytes = 56;
/** A program header table larger than this is not a kernel's (it has five entries). */
const maxSegments = 64;

export interface TrimmedSegment {
  readonly index: number;
  readonly fileBytesBefore: number;
  readonly fileBytesAfter: number;
}

export interface KernelTrim {
  /** The new file: a prefix of the input with its headers rewritten. */
  readonly bytes: Buffer;
  readonly segments: readonly TrimmedSegment[];
}

/**
 * Pure: `elf` (a 64-bit little-endian ELF executable, as an x86_64 vmlinux is) with each PT_LOAD
 * segment's trailing zero bytes left to the loader's zero fill (p_filesz lowered, rounded up to 8 bytes),
 * no section header table, and the file cut after the last byte a program header still names.
 * Throws FAILED_PRECONDITION, naming `name`, for anything else.
 */
export function trimKernel(elf: Buffer, name: string): KernelTrim {
  const bad = (why: string): KataError => new KataError(Code.FailedPrecondition, `kernel ${name}: ${why}`);
  if (elf.length < ehdrBytes || elf.readUInt32BE(0) !== 0x7f454c46) throw bad("not an ELF file");
  if (elf[4] !== 2 || elf[5] !== 1) throw bad("not a 64-bit little-endian ELF file");
  const phoff = toNumber(elf.readBigUInt64LE(0x20), bad);
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  if (phentsize !== phdrBytes || phnum === 0 || phnum > maxSegments) {
    throw bad(`program header table of ${phnum} entries of ${phentsize} bytes`);
  }
  const tableEnd = phoff + phnum * phentsize;
  if (phoff < ehdrBytes || tableEnd > elf.length) throw bad("program header table outside the file");

  const out = Buffer.from(elf); // a copy: the caller's buffer is not rewritten
  const segments: TrimmedSegment[] = [];
  let end = tableEnd;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const type = out.readUInt32LE(at);
    if (type === ptNull) continue;
    const offset = toNumber(out.readBigUInt64LE(at + 8), bad);
    const filesz = toNumber(out.readBigUInt64LE(at + 32), bad);
    if (offset + filesz > elf.length) throw bad(`segment ${i} ends past the end of the file`);
    let kept = filesz;
    if (type === ptLoad) {
      let last = offset + filesz;
      while (last > offset && elf[last - 1] === 0) last--;
      kept = Math.min(filesz, roundUp8(last - offset));
      out.writeBigUInt64LE(BigInt(kept), at + 32);
      if (kept !== filesz) segments.push({ index: i, fileBytesBefore: filesz, fileBytesAfter: kept });
    }
    end = Math.max(end, offset + kept);
  }
  out.writeBigUInt64LE(0n, 0x28); // e_shoff
  out.writeUInt16LE(0, 0x3c); // e_shnum
  out.writeUInt16LE(0, 0x3e); // e_shstrndx
  return { bytes: out.subarray(0, end), segments };
}

function roundUp8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

function toNumber(v: bigint, bad: (why: string) => KataError): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`offset or size ${v} out of range`);
  return Number(v);
}
