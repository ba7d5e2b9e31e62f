import assert from "node:assert/strict";
import { describe, it, mock } from "node:test";
import { Code, isKataError } from "../../base/errors.js";
import { FrameDecoder, FrameType, encodeFrame, readFrames } from "./frame.js";
import type { Frame } from "./frame.js";

function decodeAll(decoder: FrameDecoder, chunks: Iterable<Uint8Array>): Frame[] {
  const frames: Frame[] = [];
  for (const chunk of chunks) decoder.push(chunk, (f) => frames.push(f));
  return frames;
}

function header(lengthBytes: number, streamId: number, type: number, flags = 0): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt32BE(lengthBytes, 0);
  b.writeUInt32BE(streamId, 4);
  b[8] = type;
  b[9] = flags;
  return b;
}

async function* chunksOf(...chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const c of chunks) {
    await Promise.resolve();
    yield c;
  }
}

describe("encodeFrame", () => {
  it("writes length, stream id, type and flags big-endian before the payload", () => {
    const bytes = encodeFrame({
      streamId: 0x01020305,
      type: FrameType.Response,
      flags: 0x04,
      payload: Buffer.from([0xaa, 0xbb]),
    });

    assert.deepEqual([...bytes], [0x00, 0x00, 0x00, 0x02, 0x01, 0x02, 0x03, 0x05, 0x02, 0x04, 0xaa, 0xbb]);
  });

  it("encodes an empty payload as a bare header", () => {
    const bytes = encodeFrame({ streamId: 1, type: FrameType.Request, flags: 0, payload: new Uint8Array(0) });

    assert.deepEqual([...bytes], [0, 0, 0, 0, 0, 0, 0, 1, 1, 0]);
  });

  it("refuses a payload over the limit with RESOURCE_EXHAUSTED naming both sizes", () => {
    assert.throws(
      () => encodeFrame({ streamId: 1, type: FrameType.Request, flags: 0, payload: new Uint8Array(101) }, 100),
      (e) => isKataError(e, Code.ResourceExhausted) && /101 bytes/.test(e.message) && /100 bytes/.test(e.message),
    );
  });

  it("refuses a stream id that is not a u32", () => {
    assert.throws(
      () => encodeFrame({ streamId: 2 ** 32, type: FrameType.Request, flags: 0, payload: new Uint8Array(0) }),
      (e) => isKataError(e, Code.InvalidArgument),
    );
  });
});

describe("FrameDecoder", () => {
  const fixture = Buffer.from([0, 0, 0, 3, 0, 0, 0, 7, 2, 0, 0x61, 0x62, 0x63]);

  it("decodes a frame from its exact bytes", () => {
    const frames = decodeAll(new FrameDecoder(), [fixture]);

    assert.equal(frames.length, 1);
    assert.equal(frames[0]?.streamId, 7);
    assert.equal(frames[0].type, FrameType.Response);
    assert.equal(frames[0].flags, 0);
    assert.deepEqual([...frames[0].payload], [0x61, 0x62, 0x63]);
  });

  it("decodes a frame fed one byte at a time, holding the partial bytes in between", () => {
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    const buffered: number[] = [];

    for (const byte of fixture) {
      decoder.push(Buffer.from([byte]), (f) => frames.push(f));
      buffered.push(decoder.bufferedBytes);
    }

    assert.equal(frames.length, 1);
    assert.equal(Buffer.from(frames[0]?.payload ?? []).toString(), "abc");
    assert.deepEqual(buffered, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0]);
  });

  it("decodes two frames from one chunk, and a third split across chunks", () => {
    const a = encodeFrame({ streamId: 1, type: FrameType.Request, flags: 0, payload: Buffer.from("one") });
    const b = encodeFrame({ streamId: 3, type: FrameType.Data, flags: 1, payload: new Uint8Array(0) });
    const c = encodeFrame({ streamId: 5, type: FrameType.Request, flags: 0, payload: Buffer.from("three") });
    const joined = Buffer.concat([a, b, c]);

    const frames = decodeAll(new FrameDecoder(), [
      joined.subarray(0, a.length + b.length + 4),
      joined.subarray(a.length + b.length + 4),
    ]);

    assert.deepEqual(
      frames.map((f) => [f.streamId, f.type, f.flags, Buffer.from(f.payload).toString()]),
      [
        [1, FrameType.Request, 0, "one"],
        [3, FrameType.Data, 1, ""],
        [5, FrameType.Request, 0, "three"],
      ],
    );
  });

  it("rejects a header declaring 5 MiB as soon as the header is complete, without allocating the body", () => {
    const allocUnsafe = mock.method(Buffer, "allocUnsafe");
    const alloc = mock.method(Buffer, "alloc");
    try {
      const decoder = new FrameDecoder();

      assert.throws(
        () => {
          decoder.push(header(5 << 20, 1, FrameType.Request), () => assert.fail("no frame expected"));
        },
        (e) => isKataError(e, Code.ResourceExhausted) && e.message.includes("5242880") && e.message.includes("4194304"),
      );
      const sizes = [...allocUnsafe.mock.calls, ...alloc.mock.calls].map((c) => c.arguments[0]);
      assert.ok(
        sizes.every((n) => n < 1 << 20),
        `allocations: ${sizes.join(", ")}`,
      );
    } finally {
      allocUnsafe.mock.restore();
      alloc.mock.restore();
    }
  });

  it("honours a smaller configured limit", () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 16 });

    assert.throws(
      () => {
        decoder.push(header(17, 1, FrameType.Request), () => undefined);
      },
      (e) => isKataError(e, Code.ResourceExhausted) && /17 bytes exceeds the limit of 16 bytes/.test(e.message),
    );
  });

  it("rejects an unknown frame type and stays failed afterwards", () => {
    const decoder = new FrameDecoder();

    assert.throws(
      () => {
        decoder.push(header(0, 1, 9), () => undefined);
      },
      (e) => isKataError(e, Code.InvalidArgument) && e.message === "unknown ttrpc frame type 9",
    );
    assert.throws(
      () => {
        decoder.push(fixture, () => assert.fail("a failed decoder must not decode"));
      },
      (e) => isKataError(e, Code.InvalidArgument),
    );
  });

  it("delivers the frames that precede a bad header in the same chunk", () => {
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];

    assert.throws(() => {
      decoder.push(Buffer.concat([fixture, header(0, 3, 0)]), (f) => frames.push(f));
    });

    assert.deepEqual(
      frames.map((f) => f.streamId),
      [7],
    );
  });

  it("reports a stream that ends inside a frame", () => {
    const decoder = new FrameDecoder();
    decodeAll(decoder, [fixture.subarray(0, 11)]);

    assert.throws(
      () => {
        decoder.end();
      },
      (e) => isKataError(e, Code.Unavailable) && /11 of 13 bytes/.test(e.message),
    );
  });
});

describe("readFrames", () => {
  it("decodes frames from an async byte source", async () => {
    const frames: Frame[] = [];

    for await (const f of readFrames(chunksOf(fixtureOf(1, "x"), fixtureOf(3, "yz")))) frames.push(f);

    assert.deepEqual(
      frames.map((f) => [f.streamId, Buffer.from(f.payload).toString()]),
      [
        [1, "x"],
        [3, "yz"],
      ],
    );
  });

  it("fails when the source ends inside a frame", async () => {
    const truncated = fixtureOf(1, "hello").subarray(0, 12);

    await assert.rejects(
      async () => {
        for await (const f of readFrames(chunksOf(truncated))) assert.fail(`unexpected frame ${f.streamId}`);
      },
      (e) => isKataError(e, Code.Unavailable),
    );
  });
});

function fixtureOf(streamId: number, text: string): Buffer {
  return encodeFrame({ streamId, type: FrameType.Request, flags: 0, payload: Buffer.from(text) });
}
