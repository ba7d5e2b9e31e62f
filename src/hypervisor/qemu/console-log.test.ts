// The capped console log: the rotation plan alone, then the writer and the tail reader on a temp dir.

import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { CappedLog, LineSplitter, planAppend, readLogTail } from "./console-log.js";

describe("planAppend", () => {
  it("appends while the chunk fits", () => {
    assert.deepEqual(planAppend(0, 10, 10), { rotate: false, skip: 0 });
    assert.deepEqual(planAppend(4, 6, 10), { rotate: false, skip: 0 });
  });

  it("rotates a non-empty file the chunk would overflow", () => {
    assert.deepEqual(planAppend(5, 6, 10), { rotate: true, skip: 0 });
  });

  it("keeps only the end of a chunk longer than the cap, rotating only a non-empty file", () => {
    assert.deepEqual(planAppend(0, 25, 10), { rotate: false, skip: 15 });
    assert.deepEqual(planAppend(3, 25, 10), { rotate: true, skip: 15 });
  });
});

describe("CappedLog", () => {
  let dir = "";
  let path = "";

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "console-log-test-"));
    path = join(dir, "console.log");
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const read = (p: string): Promise<string> => readFile(p, "utf8");

  it("writes pushed chunks in order", async () => {
    const log = new CappedLog(path, { maxBytes: 100 });

    log.push(Buffer.from("boot\n"));
    log.push(Buffer.from("agent up\n"));
    await log.close();

    assert.equal(await read(path), "boot\nagent up\n");
  });

  it("rotates into .1 when full: both files stay under the cap and together end with the latest output", async () => {
    const log = new CappedLog(path, { maxBytes: 16 });
    const lines = Array.from({ length: 20 }, (_, i) => `line ${String(i).padStart(2, "0")}\n`);

    for (const l of lines) {
      log.push(Buffer.from(l));
      await log.flush();
    }
    await log.close();

    const [older, current] = [await read(log.rotatedPath), await read(path)];
    assert.ok(older.length <= 16 && current.length <= 16, `${older.length} and ${current.length} bytes`);
    assert.ok(lines.join("").endsWith(older + current));
    assert.equal(current.split("\n").at(-2), "line 19");
  });

  it("keeps only the last maxBytes of a chunk longer than the cap", async () => {
    const log = new CappedLog(path, { maxBytes: 8 });

    log.push(Buffer.from("0123456789abcdef"));
    await log.close();

    assert.equal(await read(path), "89abcdef");
  });

  it("drops what exceeds the queue instead of buffering it, and counts it", async () => {
    const log = new CappedLog(path, { maxBytes: 1000, maxQueuedBytes: 10 });

    for (let i = 0; i < 5; i++) log.push(Buffer.from("abcd"));
    await log.close();

    const written = await read(path);
    assert.ok(log.dropped > 0);
    assert.equal(written.length + log.dropped, 20);
    assert.match(written, /^(abcd)+$/);
  });

  it("drops and counts a chunk whose write fails, reports the first failure only, and never throws", async () => {
    await mkdir(path);
    const errors: unknown[] = [];
    const log = new CappedLog(path, { onError: (e) => errors.push(e) });

    log.push(Buffer.from("lost"));
    await log.flush();
    log.push(Buffer.from("lost too"));
    await log.close();

    assert.equal(log.dropped, 12);
    assert.equal(errors.length, 1);
  });

  it("drops pushes after close", async () => {
    const log = new CappedLog(path);
    await log.close();

    log.push(Buffer.from("late"));

    assert.equal(log.dropped, 4);
  });

  it("removes a stale .1 when it starts writing", async () => {
    await writeFile(`${path}.1`, "an earlier VM\n");
    const log = new CappedLog(path);

    log.push(Buffer.from("this VM\n"));
    await log.close();

    await assert.rejects(stat(`${path}.1`), { code: "ENOENT" });
  });
});

describe("readLogTail", () => {
  let dir = "";
  let path = "";

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "console-tail-test-"));
    path = join(dir, "console.log");
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is undefined when there is no log", async () => {
    assert.equal(await readLogTail(path, 5), undefined);
  });

  it("returns the last non-blank lines of the current file, without carriage returns", async () => {
    await writeFile(path, "a\r\n\r\nb\r\nc\r\n");

    assert.equal(await readLogTail(path, 2), "b\nc");
  });

  it("reaches into .1 when the current file is short, joining a line split by the rotation", async () => {
    await writeFile(`${path}.1`, "old 1\nold 2\nsplit ");
    await writeFile(path, "line\nnew 1\n");

    assert.equal(await readLogTail(path, 3), "old 2\nsplit line\nnew 1");
  });
});

describe("LineSplitter", () => {
  function split(chunks: string[], maxBytes?: number): string[] {
    const out: string[] = [];
    const s = new LineSplitter((l) => out.push(l), maxBytes);
    for (const c of chunks) s.push(Buffer.from(c));
    return out;
  }

  it("gives complete lines, joined across chunks, without CR or LF", () => {
    assert.deepEqual(split(["boo", "t\r\nagent ", "up\n", "partial"]), ["boot", "agent up"]);
  });

  it("gives empty lines and several lines of one chunk", () => {
    assert.deepEqual(split(["a\n\nb\n"]), ["a", "", "b"]);
  });

  it("cuts a long line once and skips the rest of it up to its newline", () => {
    assert.deepEqual(split(["0123456789", "abcdef", "ghi\nnext\n"], 8), ["01234567 [cut]", "next"]);
  });

  it("cuts a line exactly at the limit only when it grows past it", () => {
    assert.deepEqual(split(["12345678\n", "123456789\n"], 8), ["12345678", "12345678 [cut]"]);
  });
});
