// Whether a binary loads shared libraries, read from its ELF program headers: only one with a PT_INTERP
// segment is started through the dynamic loader, which maps them (a static-pie relocates itself and has
// PT_DYNAMIC without PT_INTERP). Asked before running ldd, whose answer for a static binary
// ("not a dynamic executable", exit 1) exists only as text.

import { open } from "node:fs/promises";

const ptInterp = 3;
/** A program header table larger than this is not a real binary's (they have a dozen entries). */
const maxTableBytes = 64 << 10;

export interface ElfLayout {
  readonly littleEndian: boolean;
  /** File offset, entry size and count of the program header table. */
  readonly phoff: number;
  readonly phentsize: number;
  readonly phnum: number;
}

/** The program header table's place from an ELF header (its first 64 bytes), or undefined for non-ELF. */
export function elfLayout(head: Uint8Array): ElfLayout | undefined {
  if (head.length < 52 || head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) {
    return undefined;
  }
  const is64 = head[4] === 2;
  const littleEndian = head[5] === 1;
  if ((head[4] !== 1 && !is64) || (head[5] !== 1 && head[5] !== 2) || (is64 && head.length < 64)) return undefined;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const phoff = is64 ? Number(view.getBigUint64(0x20, littleEndian)) : view.getUint32(0x1c, littleEndian);
  const phentsize = view.getUint16(is64 ? 0x36 : 0x2a, littleEndian);
  const phnum = view.getUint16(is64 ? 0x38 : 0x2c, littleEndian);
  return { littleEndian, phoff, phentsize, phnum };
}

/** True when the program header table names an interpreter (PT_INTERP). */
export function hasInterpreter(layout: ElfLayout, table: Uint8Array): boolean {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  for (let off = 0; off + 4 <= table.length && off < layout.phnum * layout.phentsize; off += layout.phentsize) {
    const type = view.getUint32(off, layout.littleEndian);
    if (type === ptInterp) return true;
  }
  return false;
}

/** Whether `file` is an ELF binary that loads shared libraries (false for a static one or a non-ELF file). */
export async function isDynamicElf(file: string): Promise<boolean> {
  const fh = await open(file, "r");
  try {
    const head = new Uint8Array(64);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const layout = elfLayout(head.subarray(0, bytesRead));
    if (layout === undefined || layout.phentsize < 4) return false;
    const table = new Uint8Array(Math.min(layout.phnum * layout.phentsize, maxTableBytes));
    const got = await fh.read(table, 0, table.length, layout.phoff);
    return hasInterpreter(layout, table.subarray(0, got.bytesRead));
  } finally {
    await fh.close();
  }
}
