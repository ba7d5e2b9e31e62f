// The newc ("070701") cpio format the kernel unpacks as an initramfs: a pure header encoder plus an
// in-memory archive encoder for tests. Format: https://docs.kernel.org/driver-api/early-userspace/buffer-format.html
// Archives are deterministic: entries sorted by name, inodes numbered in that order, mtime/uid/gid 0.

import { Code, KataError } from "../base/errors.js";

/** Where a regular file's bytes come from: inline (small generated files) or streamed from disk. */
export type FileSource =
  | { readonly kind: "bytes"; readonly data: Uint8Array }
  | { readonly kind: "path"; readonly path: string; readonly sizeBytes: number };

/** One archive member. `path` is absolute in the guest ("/etc/inittab"); `mode` holds permission bits only. */
export type CpioEntry =
  | { readonly kind: "dir"; readonly path: string; readonly mode: number }
  | { readonly kind: "file"; readonly path: string; readonly mode: number; readonly source: FileSource }
  | { readonly kind: "symlink"; readonly path: string; readonly target: string }
  | {
      readonly kind: "chardev";
      readonly path: string;
      readonly mode: number;
      readonly major: number;
      readonly minor: number;
    };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const trailerName = "TRAILER!!!";

interface NewcFields {
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly fileSizeBytes: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
}

/** Bytes of zero padding that bring `n` up to a multiple of 4. */
export function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function hex8(n: number, what: string): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new KataError(Code.InvalidArgument, `cpio ${what} ${n} does not fit in 32 bits`);
  }
  return n.toString(16).toUpperCase().padStart(8, "0");
}

/** The 110-byte header, the NUL-terminated name and the padding that aligns the data to 4 bytes. */
export function newcHeader(name: string, f: NewcFields): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, "utf8");
  const fields = [
    "070701",
    hex8(f.ino, "ino"),
    hex8(f.mode, "mode"),
    hex8(0, "uid"),
    hex8(0, "gid"),
    hex8(f.nlink, "nlink"),
    hex8(0, "mtime"),
    hex8(f.fileSizeBytes, `size of ${name}`),
    hex8(0, "devmajor"),
    hex8(0, "devminor"),
    hex8(f.rdevMajor, "rdevmajor"),
    hex8(f.rdevMinor, "rdevminor"),
    hex8(nameBytes.length, "namesize"),
    hex8(0, "check"),
  ].join("");
  const head = Buffer.from(fields, "ascii");
  return Buffer.concat([head, nameBytes, Buffer.alloc(pad4(head.length + nameBytes.length))]);
}

/** The archive name of a guest path: relative, as `cpio -o` writes it ("/etc/x" -> "etc/x"). */
export function archiveName(path: string): string {
  const name = path.replace(/^\/+/, "");
  if (name === "" || name.includes("\0") || name.split("/").some((p) => p === "" || p === "." || p === "..")) {
    throw new KataError(Code.InvalidArgument, `cpio entry path ${JSON.stringify(path)} is not a clean absolute path`);
  }
  return name;
}

/** The data size of an entry as it is stored in the archive. */
export function entrySizeBytes(e: CpioEntry): number {
  switch (e.kind) {
    case "file":
      return e.source.kind === "bytes" ? e.source.data.length : e.source.sizeBytes;
    case "symlink":
      return Buffer.byteLength(e.target, "utf8");
    case "dir":
    case "chardev":
      return 0;
  }
}

/** Header (with name and padding) of one entry; the caller writes the data and `pad4(size)` zeros. */
export function entryHeader(e: CpioEntry, ino: number): Buffer {
  if (e.kind !== "symlink" && (e.mode & ~0o7777) !== 0) {
    throw new KataError(
      Code.InvalidArgument,
      `cpio entry ${e.path}: mode ${e.mode.toString(8)} has non-permission bits`,
    );
  }
  const common = { ino, fileSizeBytes: entrySizeBytes(e), rdevMajor: 0, rdevMinor: 0 };
  switch (e.kind) {
    case "dir":
      return newcHeader(archiveName(e.path), { ...common, mode: S_IFDIR | e.mode, nlink: 2 });
    case "file":
      return newcHeader(archiveName(e.path), { ...common, mode: S_IFREG | e.mode, nlink: 1 });
    case "symlink":
      return newcHeader(archiveName(e.path), { ...common, mode: S_IFLNK | 0o777, nlink: 1 });
    case "chardev":
      return newcHeader(archiveName(e.path), {
        ...common,
        mode: S_IFCHR | e.mode,
        nlink: 1,
        rdevMajor: e.major,
        rdevMinor: e.minor,
      });
  }
}

/** The end-of-archive marker. */
export function trailer(): Buffer {
  return newcHeader(trailerName, { ino: 0, mode: 0, nlink: 1, fileSizeBytes: 0, rdevMajor: 0, rdevMinor: 0 });
}

/**
 * Entries in archive order: sorted by the bytes of their names, which also puts every directory before
 * its contents (a prefix sorts first), as the kernel's unpacker needs. Throws INVALID_ARGUMENT on a
 * duplicate path.
 */
export function orderEntries(entries: readonly CpioEntry[]): CpioEntry[] {
  const keyed = entries.map((e) => ({ e, key: Buffer.from(archiveName(e.path), "utf8") }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  for (let i = 1; i < keyed.length; i++) {
    const prev = keyed[i - 1];
    const cur = keyed[i];
    if (prev !== undefined && cur !== undefined && prev.key.equals(cur.key)) {
      throw new KataError(Code.InvalidArgument, `cpio entry ${cur.e.path} appears twice`);
    }
  }
  return keyed.map((k) => k.e);
}

/** The whole archive in memory; only for entries whose files are inline bytes (tests, small archives). */
export function encodeCpio(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  orderEntries(entries).forEach((e, i) => {
    parts.push(entryHeader(e, i + 1));
    let data: Uint8Array;
    if (e.kind === "file") {
      if (e.source.kind !== "bytes") {
        throw new KataError(Code.InvalidArgument, `encodeCpio: ${e.path} is on disk; use writeCpioFile`);
      }
      data = e.source.data;
    } else {
      data = e.kind === "symlink" ? Buffer.from(e.target, "utf8") : new Uint8Array(0);
    }
    parts.push(Buffer.from(data), Buffer.alloc(pad4(data.length)));
  });
  parts.push(trailer());
  return Buffer.concat(parts);
}
