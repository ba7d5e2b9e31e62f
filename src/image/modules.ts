// Kernel module metadata without kmod: the `.modinfo` ELF section of a .ko (NUL-terminated key=value
// strings, the same data `modinfo -F depends` prints) and the dependency-first load order for insmod.

import { Code, KataError } from "../base/errors.js";

/** The module name the kernel uses for a file: "9pnet_virtio.ko" -> "9pnet_virtio"; `-` and `_` are one. */
export function moduleName(fileName: string): string {
  const base = fileName.split("/").pop() ?? fileName;
  return base.replace(/\.ko(\.xz|\.zst|\.gz)?$/, "").replaceAll("-", "_");
}

/**
 * Maps module name -> path for every `.ko` (or compressed `.ko.*`) among `paths`.
 * Throws INVALID_ARGUMENT when two files claim the same module name.
 */
export function indexModules(paths: readonly string[]): Map<string, string> {
  const index = new Map<string, string>();
  for (const p of paths) {
    if (!/\.ko(\.xz|\.zst|\.gz)?$/.test(p)) continue;
    const name = moduleName(p);
    const seen = index.get(name);
    if (seen !== undefined)
      throw new KataError(Code.InvalidArgument, `kernel module ${name} found twice: ${seen} and ${p}`);
    index.set(name, p);
  }
  return index;
}

/** The bytes of section `name` of a little-endian ELF64 file, or undefined when it has none. */
export function elfSection(elf: Uint8Array, name: string): Uint8Array | undefined {
  const buf = Buffer.from(elf.buffer, elf.byteOffset, elf.byteLength);
  const isElf64Le = buf.length >= 64 && buf.readUInt32BE(0) === 0x7f454c46 && buf[4] === 2 && buf[5] === 1;
  if (!isElf64Le) throw new KataError(Code.InvalidArgument, "not a little-endian ELF64 file");
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  const shstrndx = buf.readUInt16LE(0x3e);
  if (shentsize < 64 || shstrndx >= shnum || shoff + shnum * shentsize > buf.length) {
    throw new KataError(Code.InvalidArgument, "ELF section header table is out of bounds");
  }
  const section = (i: number): { nameOff: number; offset: number; size: number } => {
    const at = shoff + i * shentsize;
    const offset = Number(buf.readBigUInt64LE(at + 0x18));
    const size = Number(buf.readBigUInt64LE(at + 0x20));
    if (offset + size > buf.length) throw new KataError(Code.InvalidArgument, `ELF section ${i} is out of bounds`);
    return { nameOff: buf.readUInt32LE(at), offset, size };
  };
  const strtab = section(shstrndx);
  const wanted = Buffer.from(`${name}\0`, "latin1");
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const at = strtab.offset + s.nameOff;
    if (buf.subarray(at, at + wanted.length).equals(wanted)) return buf.subarray(s.offset, s.offset + s.size);
  }
  return undefined;
}

/** Splits a `.modinfo` section into key -> values (keys such as `alias` repeat). */
export function parseModinfo(section: Uint8Array): Map<string, string[]> {
  const info = new Map<string, string[]>();
  for (const s of Buffer.from(section.buffer, section.byteOffset, section.byteLength).toString("latin1").split("\0")) {
    const eq = s.indexOf("=");
    if (eq <= 0) continue; // alignment padding between strings
    const key = s.slice(0, eq);
    info.set(key, [...(info.get(key) ?? []), s.slice(eq + 1)]);
  }
  return info;
}

/** The module names a .ko depends on (its `depends=` entry; empty when it has none). */
export function moduleDepends(ko: Uint8Array): string[] {
  const section = elfSection(ko, ".modinfo");
  if (section === undefined) throw new KataError(Code.InvalidArgument, "no .modinfo section");
  const depends = parseModinfo(section).get("depends") ?? [];
  return depends
    .flatMap((d) => d.split(","))
    .filter((d) => d !== "")
    .map(moduleName);
}

/**
 * Load order for `wanted`: each module after its dependencies, each once (the order `modinfo -F depends`
 * gives with a depth-first walk). `dependsOf` returns undefined for an unknown module.
 * Throws NOT_FOUND for a missing module (naming who needed it), INVALID_ARGUMENT for a cycle.
 */
export function resolveLoadOrder(
  wanted: readonly string[],
  dependsOf: (name: string) => readonly string[] | undefined,
): string[] {
  const order: string[] = [];
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (raw: string, neededBy: string | undefined): void => {
    const name = moduleName(raw);
    if (done.has(name)) return;
    if (path.includes(name)) {
      const cycle = [...path.slice(path.indexOf(name)), name].join(" -> ");
      throw new KataError(Code.InvalidArgument, `kernel module dependency cycle: ${cycle}`);
    }
    const deps = dependsOf(name);
    if (deps === undefined) {
      const why = neededBy === undefined ? "" : ` (needed by ${neededBy})`;
      throw new KataError(Code.NotFound, `kernel module ${name} not found${why}`);
    }
    path.push(name);
    for (const d of deps) visit(d, name);
    path.pop();
    done.add(name);
    order.push(name);
  };
  for (const w of wanted) visit(w, undefined);
  return order;
}
