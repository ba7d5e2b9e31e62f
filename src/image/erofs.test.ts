import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { notInstalled, type ProcessRunner, type RunResult } from "../platform/process.js";
import { hostMkfsErofsPath, mkfsErofsArgs, writeErofsImage } from "./erofs.js";

/** Stands in for mkfs.erofs: records the staging tree it was given, then writes a fake image. */
class FakeMkfs implements ProcessRunner {
  readonly trees: Record<string, { mode: number; content?: string }>[] = [];
  readonly argv: string[][] = [];

  async run(file: string, args: readonly string[]): Promise<RunResult> {
    this.argv.push([file, ...args]);
    const [out, dir] = args.slice(-2);
    assert.ok(out !== undefined && dir !== undefined);
    const tree: Record<string, { mode: number; content?: string }> = {};
    for (const rel of await readdir(dir, { recursive: true })) {
      const st = await stat(join(dir, rel));
      tree[rel] = st.isFile()
        ? { mode: st.mode & 0o7777, content: await readFile(join(dir, rel), "utf8") }
        : { mode: st.mode & 0o7777 };
    }
    this.trees.push(tree);
    await writeFile(out, "erofs!");
    return { code: 0, signal: null, stdout: "", stderr: "" };
  }

  spawn(): never {
    throw new Error("not used");
  }
}

describe("mkfsErofsArgs", () => {
  it("fixes owners, timestamps and the UUID so equal trees give equal images", () => {
    assert.deepEqual(mkfsErofsArgs("/o/tools.erofs", "/o/stage", "u-u"), [
      "--quiet",
      "--all-root",
      "-T0",
      "-Uu-u",
      "/o/tools.erofs",
      "/o/stage",
    ]);
  });
});

describe("writeErofsImage", () => {
  it("stages copies with the planned modes, runs mkfs.erofs on them, then removes the stage", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kata-ts-erofs-"));
    try {
      await writeFile(join(dir, "node-src"), "node");
      await writeFile(join(dir, "libc-src"), "libc");
      const runner = new FakeMkfs();
      const out = join(dir, "tools.erofs");
      const stage = join(dir, "stage");

      const r = await writeErofsImage(
        { runner },
        out,
        stage,
        [
          { path: "/usr/bin/node", mode: 0o755, source: { sourcePath: join(dir, "node-src"), sizeBytes: 4 } },
          { path: "/lib/libc.so.6", mode: 0o755, source: { sourcePath: join(dir, "libc-src"), sizeBytes: 4 } },
        ],
        "u-u",
      );

      assert.equal(r.sizeBytes, 6);
      assert.deepEqual(runner.argv[0], [hostMkfsErofsPath, ...mkfsErofsArgs(out, stage, "u-u")]);
      assert.deepEqual(runner.trees[0], {
        usr: { mode: 0o755 },
        "usr/bin": { mode: 0o755 },
        "usr/bin/node": { mode: 0o755, content: "node" },
        lib: { mode: 0o755 },
        "lib/libc.so.6": { mode: 0o755, content: "libc" },
      });
      assert.equal((await stat(join(dir, "libc-src"))).mode & 0o777, 0o644, "the source keeps its mode");
      await assert.rejects(stat(stage), { code: "ENOENT" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("names the package when mkfs.erofs is missing, and still removes the stage", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kata-ts-erofs-"));
    try {
      const runner: ProcessRunner = {
        run: (file) => Promise.reject(notInstalled(file)),
        spawn: () => Promise.reject(new Error("not used")),
      };

      await assert.rejects(
        writeErofsImage({ runner }, join(dir, "t.erofs"), join(dir, "stage"), [], "u-u"),
        /install the Debian package erofs-utils/,
      );
      await assert.rejects(stat(join(dir, "stage")), { code: "ENOENT" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
