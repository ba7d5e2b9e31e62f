import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { NodeProcessRunner } from "../platform/process.js";
import { requires } from "../../test/helpers/requires.js";
import { archiveName, encodeCpio, orderEntries, pad4, type CpioEntry } from "./cpio.js";
import { cpioSizeBytes, writeCpioFile } from "./cpio-writer.js";

const bytes = (s: string): { kind: "bytes"; data: Uint8Array } => ({ kind: "bytes", data: Buffer.from(s) });

/** newc header text: magic + 13 fields of 8 hex digits (ino mode uid gid nlink mtime size dev rdev namesize check). */
function header(
  ino: string,
  mode: string,
  nlink: string,
  size: string,
  rdev: [string, string],
  namesize: string,
): string {
  const z = "00000000";
  return `070701${ino}${mode}${z}${z}${nlink}${z}${size}${z}${z}${rdev[0]}${rdev[1]}${namesize}${z}`;
}

describe("encodeCpio", () => {
  it("encodes a tiny archive byte for byte", () => {
    const entries: CpioEntry[] = [
      { kind: "symlink", path: "/l", target: "etc/a" },
      { kind: "file", path: "/etc/a", mode: 0o644, source: bytes("hi\n") },
      { kind: "dir", path: "/etc", mode: 0o755 },
      { kind: "chardev", path: "/c", mode: 0o600, major: 5, minor: 1 },
    ];
    const none: [string, string] = ["00000000", "00000000"];

    const archive = encodeCpio(entries);

    const expected = [
      // "c": 110 + 2 name bytes = 112, already aligned
      header("00000001", "00002180", "00000001", "00000000", ["00000005", "00000001"], "00000002"),
      "c\0",
      // "etc": 110 + 4 = 114, 2 bytes of padding
      header("00000002", "000041ED", "00000002", "00000000", none, "00000004"),
      "etc\0\0\0",
      // "etc/a": 110 + 6 = 116; 3 data bytes + 1 padding
      header("00000003", "000081A4", "00000001", "00000003", none, "00000006"),
      "etc/a\0",
      "hi\n\0",
      // "l": the link target is the data; 5 bytes + 3 padding
      header("00000004", "0000A1FF", "00000001", "00000005", none, "00000002"),
      "l\0",
      "etc/a\0\0\0",
      // trailer: 110 + 11 = 121, 3 bytes of padding
      header("00000000", "00000000", "00000001", "00000000", none, "0000000B"),
      "TRAILER!!!\0\0\0\0",
    ].join("");
    assert.equal(archive.toString("latin1"), expected);
    assert.equal(archive.length % 4, 0);
  });

  it("is deterministic whatever the input order", () => {
    const a: CpioEntry[] = [
      { kind: "dir", path: "/b", mode: 0o755 },
      { kind: "file", path: "/b/x", mode: 0o644, source: bytes("x") },
      { kind: "dir", path: "/a", mode: 0o755 },
    ];

    assert.deepEqual(encodeCpio(a), encodeCpio([...a].reverse()));
  });
});

describe("orderEntries", () => {
  it("puts a directory before its contents, even next to a name with a lower byte", () => {
    const paths = orderEntries([
      { kind: "dir", path: "/lib64", mode: 0o755 },
      { kind: "dir", path: "/lib/modules", mode: 0o755 },
      { kind: "dir", path: "/lib", mode: 0o755 },
      { kind: "dir", path: "/lib-x", mode: 0o755 },
    ]).map((e) => e.path);

    assert.deepEqual(paths, ["/lib", "/lib-x", "/lib/modules", "/lib64"]);
  });

  it("rejects a duplicate path", () => {
    const dir: CpioEntry = { kind: "dir", path: "/etc", mode: 0o755 };

    assert.throws(() => orderEntries([dir, dir]), /\/etc appears twice/);
  });
});

describe("archiveName", () => {
  it("makes paths relative and rejects unclean ones", () => {
    assert.equal(archiveName("/usr/bin/node"), "usr/bin/node");
    assert.throws(() => archiveName("/usr/../etc"), /not a clean absolute path/);
    assert.throws(() => archiveName("/"), /not a clean absolute path/);
  });
});

describe("pad4", () => {
  it("pads to the next multiple of 4", () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5].map(pad4), [0, 3, 2, 1, 0, 3]);
  });
});

const noCpio = requires("cpio");

describe("writeCpioFile", () => {
  it("streams files from disk into an archive GNU cpio lists", { skip: noCpio, timeout: 30_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), "kata-ts-cpio-"));
    try {
      const big = join(dir, "big.bin");
      await writeFile(big, Buffer.alloc(3 * (1 << 20) + 5, 7));
      const entries: CpioEntry[] = [
        {
          kind: "file",
          path: "/data/big.bin",
          mode: 0o644,
          source: { kind: "path", path: big, sizeBytes: (await stat(big)).size },
        },
        { kind: "dir", path: "/data", mode: 0o755 },
        { kind: "file", path: "/init", mode: 0o755, source: bytes("#!/bin/sh\n") },
        { kind: "symlink", path: "/sh", target: "/bin/busybox" },
        { kind: "chardev", path: "/console", mode: 0o600, major: 5, minor: 1 },
      ];
      const out = join(dir, "out.cpio");

      const written = await writeCpioFile(out, entries);
      // A test is its own composition root: it builds the real runner to call the real cpio.
      const listed = await new NodeProcessRunner().run("cpio", ["-it", "--quiet", "-F", out]);

      assert.equal(listed.code, 0, listed.stderr);
      assert.deepEqual(listed.stdout.trim().split("\n"), ["console", "data", "data/big.bin", "init", "sh"]);
      assert.equal(written.sizeBytes, (await stat(out)).size);
      assert.equal(written.sizeBytes, cpioSizeBytes(entries));
      assert.equal((await readFile(out)).subarray(0, 6).toString("latin1"), "070701");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("fails when a source file's size differs from the planned one", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kata-ts-cpio-"));
    try {
      const f = join(dir, "f");
      await writeFile(f, "12345");
      const entries: CpioEntry[] = [
        { kind: "file", path: "/f", mode: 0o644, source: { kind: "path", path: f, sizeBytes: 3 } },
      ];

      await assert.rejects(writeCpioFile(join(dir, "out.cpio"), entries), /expected 3 bytes/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
