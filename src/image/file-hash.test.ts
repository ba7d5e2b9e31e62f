import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { hashFiles } from "./file-hash.js";

describe("hashFiles", () => {
  it("hashes content, and reuses a known hash only while size and mtime match", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kata-ts-hash-"));
    try {
      const f = join(dir, "f");
      await writeFile(f, "hello");
      const st = await stat(f);
      const real = createHash("sha256").update("hello").digest("hex");

      const fresh = await hashFiles([f, f], {});
      const reused = await hashFiles([f], { [f]: { sizeBytes: st.size, mtimeMs: st.mtimeMs, sha256: "cached" } });
      const stale = await hashFiles([f], { [f]: { sizeBytes: st.size + 1, mtimeMs: st.mtimeMs, sha256: "cached" } });

      assert.deepEqual(Object.keys(fresh), [f]);
      assert.equal(fresh[f]?.sha256, real);
      assert.equal(reused[f]?.sha256, "cached");
      assert.equal(stale[f]?.sha256, real);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
