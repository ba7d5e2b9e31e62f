import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { elfLayout, hasInterpreter, isDynamicElf } from "./elf.js";

/** An ELF file: header, then a program header table with entries of the given p_type. */
function elf(opts: { is64: boolean; littleEndian: boolean; types: number[] }): Uint8Array {
  const headSize = opts.is64 ? 64 : 52;
  const entSize = opts.is64 ? 56 : 32;
  const bytes = new Uint8Array(headSize + entSize * opts.types.length);
  const v = new DataView(bytes.buffer);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, opts.is64 ? 2 : 1, opts.littleEndian ? 1 : 2, 1]);
  const le = opts.littleEndian;
  if (opts.is64) {
    v.setBigUint64(0x20, BigInt(headSize), le);
    v.setUint16(0x36, entSize, le);
    v.setUint16(0x38, opts.types.length, le);
  } else {
    v.setUint32(0x1c, headSize, le);
    v.setUint16(0x2a, entSize, le);
    v.setUint16(0x2c, opts.types.length, le);
  }
  opts.types.forEach((t, i) => {
    v.setUint32(headSize + i * entSize, t, le);
  });
  return bytes;
}

const ptLoad = 1;
const ptDynamic = 2;
const ptInterp = 3;

describe("elfLayout and hasInterpreter", () => {
  for (const is64 of [true, false]) {
    for (const littleEndian of [true, false]) {
      it(`find PT_INTERP in a ${is64 ? 64 : 32}-bit ${littleEndian ? "little" : "big"}-endian binary`, () => {
        const dynamic = elf({ is64, littleEndian, types: [ptLoad, ptInterp, ptDynamic] });
        const staticPie = elf({ is64, littleEndian, types: [ptLoad, ptDynamic] });

        const layout = elfLayout(dynamic);

        assert.deepEqual(layout, { littleEndian, phoff: is64 ? 64 : 52, phentsize: is64 ? 56 : 32, phnum: 3 });
        assert.equal(hasInterpreter(layout, dynamic.subarray(layout.phoff)), true);
        const pieLayout = elfLayout(staticPie);
        assert.ok(pieLayout !== undefined);
        assert.equal(hasInterpreter(pieLayout, staticPie.subarray(pieLayout.phoff)), false);
      });
    }
  }

  it("sees no ELF in a script or a short file", () => {
    assert.equal(
      elfLayout(new TextEncoder().encode("#!/bin/sh\necho hello, this is not an ELF file at all...\n")),
      undefined,
    );
    assert.equal(elfLayout(new Uint8Array([0x7f, 0x45, 0x4c, 0x46])), undefined);
  });
});

describe("isDynamicElf", () => {
  it("reads the answer from a file", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "kata-ts-elf-"));
    try {
      const files = {
        dynamic: elf({ is64: true, littleEndian: true, types: [ptLoad, ptInterp] }),
        static: elf({ is64: true, littleEndian: true, types: [ptLoad] }),
        script: new TextEncoder().encode("#!/bin/sh\n"),
      };
      for (const [name, bytes] of Object.entries(files)) await writeFile(path.join(dir, name), bytes);

      assert.equal(await isDynamicElf(path.join(dir, "dynamic")), true);
      assert.equal(await isDynamicElf(path.join(dir, "static")), false);
      assert.equal(await isDynamicElf(path.join(dir, "script")), false);
      assert.equal(await isDynamicElf(process.execPath), true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
