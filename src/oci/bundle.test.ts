import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { loadBundle, maxConfigBytes, parseConfigJson, positionOf } from "./bundle.js";
import { defaultSpec } from "./default-spec.js";

let root = "";
let n = 0;

/** A fresh bundle directory with `files` (relative path → content; a trailing "/" makes a directory). */
async function bundle(files: Record<string, string>): Promise<string> {
  const dir = path.join(root, `b${n++}`);
  await mkdir(dir);
  for (const [rel, text] of Object.entries(files)) {
    const p = path.join(dir, rel);
    if (rel.endsWith("/")) {
      await mkdir(p, { recursive: true });
    } else {
      await mkdir(path.dirname(p), { recursive: true });
      await writeFile(p, text);
    }
  }
  return dir;
}

const config = (rootPath = "rootfs"): string => JSON.stringify(defaultSpec({ rootPath }));

describe("positionOf", () => {
  it("counts lines and columns from 1", () => {
    const text = '{\n  "a": 1,\n  "b" 2\n}';

    const positions = [0, 1, 2, text.indexOf('"b"'), text.indexOf("2")].map((o) => positionOf(text, o));

    assert.deepEqual(positions, [
      "line 1, column 1",
      "line 1, column 2",
      "line 2, column 1",
      "line 3, column 3",
      "line 3, column 7",
    ]);
  });

  it("places the end of the text after its last character", () => {
    const text = "ab\ncd";

    const where = positionOf(text, text.length);

    assert.equal(where, "line 2, column 3");
  });
});

describe("parseConfigJson", () => {
  it("returns the parsed value of valid JSON", () => {
    const text = config();

    const v = parseConfigJson(text, "/b/config.json");

    assert.deepEqual(v, defaultSpec());
  });

  it("says on which line and column a syntax error is", () => {
    const text = '{\n  "ociVersion": "1.0.2",\n  "hostname" 42\n}';

    const call = (): unknown => parseConfigJson(text, "/b/config.json");

    assert.throws(call, kataError(Code.InvalidArgument, /^\/b\/config\.json is not valid JSON at line 3, column 14$/));
  });

  it("says where truncated JSON ends", () => {
    const text = '{\n  "ociVersion": "1.0.2"';

    const call = (): unknown => parseConfigJson(text, "/b/config.json");

    assert.throws(call, kataError(Code.InvalidArgument, "/b/config.json is not valid JSON at line 2, column 24"));
  });

  it("says where a control character breaks a string", () => {
    const text = '{\n  "ociVersion": "1.0\t.2"\n}';

    const call = (): unknown => parseConfigJson(text, "/b/config.json");

    assert.throws(call, kataError(Code.InvalidArgument, "/b/config.json is not valid JSON at line 2, column 21"));
  });

  it("keeps JSON.parse's error as the cause", () => {
    const call = (): unknown => parseConfigJson("[1,]", "/b/config.json");

    assert.throws(
      call,
      (e: unknown) =>
        isKataError(e, Code.InvalidArgument) &&
        e.cause instanceof SyntaxError &&
        e.message === "/b/config.json is not valid JSON at line 1, column 4",
    );
  });

  it("says where an unexpected token such as a trailing comma in an array is", {}, () => {
    const text = '{\n  "ociVersion": "1.0.2",\n  "process": {"args": ["sh",]}\n}';

    const call = (): unknown => parseConfigJson(text, "/b/config.json");

    assert.throws(call, kataError(Code.InvalidArgument, "/b/config.json is not valid JSON at line 3, column 29"));
  });

  // Found by bundle.fuzz.test.ts: V8 quotes the text in this message, and the quote was read as the position.
  it("does not take a position from the text quoted in the error", () => {
    const text = 'e"position 99"[]';

    const call = (): unknown => parseConfigJson(text, "/b/config.json");

    assert.throws(call, kataError(Code.InvalidArgument, /^\/b\/config\.json is not valid JSON at line 1, column 1$/));
  });
});

describe("loadBundle", () => {
  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), "kata-ts-bundle-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("loads the spec and resolves a relative root.path against the bundle", async () => {
    const dir = await bundle({ "config.json": config("rootfs"), "rootfs/": "" });

    const b = await loadBundle(dir);

    assert.equal(b.dir, dir);
    assert.equal(b.rootfs, path.join(dir, "rootfs"));
    assert.deepEqual(b.spec, defaultSpec());
  });

  it("resolves a relative bundle path to an absolute one", async () => {
    const dir = await bundle({ "config.json": config("rootfs"), "rootfs/": "" });

    const b = await loadBundle(path.relative(process.cwd(), dir));

    assert.equal(b.dir, dir);
    assert.equal(b.rootfs, path.join(dir, "rootfs"));
  });

  it("keeps an absolute root.path outside the bundle", async () => {
    const elsewhere = await bundle({ "rootfs/": "" });
    const dir = await bundle({ "config.json": config(path.join(elsewhere, "rootfs")) });

    const b = await loadBundle(dir);

    assert.equal(b.rootfs, path.join(elsewhere, "rootfs"));
  });

  it("refuses a bundle directory that does not exist with NOT_FOUND", async () => {
    const dir = path.join(root, "missing");

    await assert.rejects(loadBundle(dir), kataError(Code.NotFound, `bundle ${dir} does not exist`));
  });

  it("refuses a bundle that is a file with INVALID_ARGUMENT", async () => {
    const dir = await bundle({ file: "x" });
    const file = path.join(dir, "file");

    await assert.rejects(loadBundle(file), kataError(Code.InvalidArgument, `bundle ${file} is not a directory`));
  });

  it("refuses a bundle without config.json with NOT_FOUND", async () => {
    const dir = await bundle({ "rootfs/": "" });

    await assert.rejects(loadBundle(dir), kataError(Code.NotFound, `bundle ${dir} has no config.json`));
  });

  it("refuses an oversize config.json before reading it", async () => {
    const dir = await bundle({ "config.json": "", "rootfs/": "" });
    const file = path.join(dir, "config.json");
    await truncate(file, maxConfigBytes + 1);

    await assert.rejects(
      loadBundle(dir),
      kataError(Code.InvalidArgument, `${file} is ${maxConfigBytes + 1} bytes, more than ${maxConfigBytes}`),
    );
  });

  it("names config.json and the position of a syntax error in it", async () => {
    const dir = await bundle({ "config.json": '{"ociVersion": "1.0.2", "root": {"path": "rootfs"\n', "rootfs/": "" });

    await assert.rejects(
      loadBundle(dir),
      kataError(Code.InvalidArgument, `${path.join(dir, "config.json")} is not valid JSON`),
    );
  });

  it("refuses a two-million-deep config.json naming the field, before the spec is walked", async () => {
    const spec = JSON.stringify(defaultSpec({ rootPath: "rootfs" }));
    const deep = `${spec.slice(0, -1)},"x":${"[".repeat(2_000_000)}${"]".repeat(2_000_000)}}`;
    const dir = await bundle({ "config.json": deep, "rootfs/": "" });

    await assert.rejects(
      loadBundle(dir),
      kataError(Code.InvalidArgument, `${path.join(dir, "config.json")}: x[0][0]`, "more than 64 deep"),
    );
  });

  it("names config.json in spec problems", async () => {
    const dir = await bundle({ "config.json": '{"root": {"path": "rootfs"}}', "rootfs/": "" });

    await assert.rejects(
      loadBundle(dir),
      kataError(Code.InvalidArgument, `${path.join(dir, "config.json")}: ociVersion is required`),
    );
  });

  it("refuses a config.json that is a directory with INVALID_ARGUMENT naming it", async () => {
    const dir = await bundle({ "config.json/": "", "rootfs/": "" });

    await assert.rejects(loadBundle(dir), kataError(Code.InvalidArgument, path.join(dir, "config.json")));
  });

  it("refuses a missing rootfs with NOT_FOUND naming it and config.json", async () => {
    const dir = await bundle({ "config.json": config("rootfs") });

    await assert.rejects(
      loadBundle(dir),
      kataError(
        Code.NotFound,
        `rootfs ${path.join(dir, "rootfs")} (root.path in ${path.join(dir, "config.json")}) does not exist`,
      ),
    );
  });

  it("refuses a rootfs whose parent is a file as missing", async () => {
    const dir = await bundle({ "config.json": config("config.json/rootfs") });

    await assert.rejects(loadBundle(dir), kataError(Code.NotFound, "does not exist"));
  });

  it("refuses a rootfs that is not a directory with INVALID_ARGUMENT", async () => {
    const dir = await bundle({ "config.json": config("rootfs"), rootfs: "not a dir" });

    await assert.rejects(
      loadBundle(dir),
      kataError(Code.InvalidArgument, `rootfs ${path.join(dir, "rootfs")} is not a directory`),
    );
  });

  it("follows a rootfs symlink to a directory", async () => {
    const target = await bundle({ "real/": "" });
    const dir = await bundle({ "config.json": config("rootfs") });
    await symlink(path.join(target, "real"), path.join(dir, "rootfs"));

    const b = await loadBundle(dir);

    assert.equal(b.rootfs, path.join(dir, "rootfs"));
  });
});
