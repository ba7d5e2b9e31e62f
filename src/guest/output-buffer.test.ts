import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { setImmediate as turn } from "node:timers/promises";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { OutputBuffer } from "./output-buffer.js";

/** True when `p` has not settled after the event loop had a turn to settle it. */
async function pending(p: Promise<unknown>): Promise<boolean> {
  const settled = await Promise.race([Promise.allSettled([p]).then(() => true), turn().then(() => false)]);
  return !settled;
}

/** Lets the source emit what was written to it (its 'data' events run on the next ticks; no timer). */
const delivered = (): Promise<void> => turn();

const text = (b: Uint8Array): string => Buffer.from(b).toString("utf8");

describe("OutputBuffer", () => {
  it("makes a read wait until data arrives", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source);

    const read = buf.read(100);
    const waited = await pending(read);
    source.write("hello");

    assert.equal(waited, true);
    assert.equal(text(await read), "hello");
  });

  it("returns at most maxBytes per read and the rest on later reads", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source);
    source.write("0123456789");

    const parts = [await buf.read(4), await buf.read(4), await buf.read(4)];

    assert.deepEqual(parts.map(text), ["0123", "4567", "89"]);
  });

  it("keeps the byte order across chunk boundaries", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source);
    source.write("abc");
    source.write("defg");
    source.write("hi");
    await delivered();

    const first = await buf.read(5);
    const second = await buf.read(100);

    assert.equal(text(first), "abcde");
    assert.equal(text(second), "fghi");
  });

  it("returns an empty chunk only once everything was read and the source ended", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source);
    source.end("tail");

    const data = await buf.read(100);
    const eof = await buf.read(100);
    const again = await buf.read(100);

    assert.equal(text(data), "tail");
    assert.equal(eof.length, 0);
    assert.equal(again.length, 0);
    assert.equal(buf.ended, true);
  });

  it("is not ended while data is left to read after the source ended", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source);
    source.end("abc");
    await buf.read(1);

    const ended = buf.ended;

    assert.equal(ended, false);
    assert.equal(text(await buf.read(100)), "bc");
  });

  it("wakes a waiting read with an empty chunk when the source ends", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source);
    const read = buf.read(100);

    source.end();

    assert.equal((await read).length, 0);
  });

  it("ends when the source fails", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source);
    const read = buf.read(100);

    source.destroy(new Error("EIO"));

    assert.equal((await read).length, 0);
  });

  it("is at its end from the start without a source", async () => {
    const buf = new OutputBuffer(null);

    const data = await buf.read(100);

    assert.equal(data.length, 0);
    assert.equal(buf.ended, true);
  });

  it("pauses the source above the high-water mark and resumes it once drained", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source, 4);
    source.write("abcdef");
    await delivered();
    const pausedWhenFull = source.isPaused();
    source.write("ghij");
    await delivered();

    const first = await buf.read(100);
    const resumedAfterRead = !source.isPaused();
    const second = await buf.read(100);

    assert.equal(pausedWhenFull, true);
    assert.equal(text(first), "abcdef", "data written while paused stays in the source");
    assert.equal(resumedAfterRead, true);
    assert.equal(text(second), "ghij");
  });

  it("keeps the source paused while the buffer is still at the high-water mark", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source, 4);
    source.write("abcdefgh");
    await delivered();

    await buf.read(2);

    assert.equal(source.isPaused(), true);
  });

  it("rejects a waiting read with CANCELLED when its signal aborts", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source);
    const ac = new AbortController();
    const read = buf.read(100, ac.signal);

    ac.abort();

    await assert.rejects(read, kataError(Code.Cancelled, "read stream: cancelled"));
  });

  it("rejects at once when the signal is already aborted and nothing is buffered", async () => {
    const buf = new OutputBuffer(new PassThrough());

    const read = buf.read(100, AbortSignal.abort());

    await assert.rejects(read, kataError(Code.Cancelled));
  });

  it("still serves later reads after one was cancelled, losing no data", async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(source);
    const ac = new AbortController();
    const cancelled = buf.read(100, ac.signal);
    ac.abort();
    await assert.rejects(cancelled, kataError(Code.Cancelled));

    source.write("after");

    assert.equal(text(await buf.read(100)), "after");
  });
});
