// Property-based tests of the ttRPC frame decoder: every byte stream, cut into chunks anywhere, is decoded
// exactly as a whole-buffer reference decoder reads it, with bounded buffering and KataErrors only.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Code, isKataError } from "../../base/errors.js";
import { fuzzParams, onlyKataError } from "../../../test/helpers/fuzz.js";
import { FrameDecoder, FrameType, encodeFrame, frameHeaderBytes, readFrames } from "./frame.js";
import type { Frame } from "./frame.js";

/** Small, so that random lengths land on both sides of it and frames stay cheap to build. */
const maxFrameBytes = 64;

interface Plain {
  streamId: number;
  type: number;
  flags: number;
  payload: number[];
}

const plain = (f: Frame): Plain => ({ streamId: f.streamId, type: f.type, flags: f.flags, payload: [...f.payload] });

/**
 * The reference: reads `bytes` as one buffer, header by header. Returns the frames before the first
 * bad header and the code of the error the decoder must raise there (undefined when there is none).
 */
function reference(bytes: Uint8Array, max: number): { frames: Plain[]; error: string | undefined; rest: number } {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames: Plain[] = [];
  let off = 0;
  while (view.length - off >= frameHeaderBytes) {
    const length = view.readUInt32BE(off);
    const type = view[off + 8] ?? 0;
    if (length > max) return { frames, error: Code.ResourceExhausted, rest: 0 };
    if (type < 1 || type > 3) return { frames, error: Code.InvalidArgument, rest: 0 };
    if (view.length - off - frameHeaderBytes < length) break;
    const start = off + frameHeaderBytes;
    frames.push({
      streamId: view.readUInt32BE(off + 4),
      type,
      flags: view[off + 9] ?? 0,
      payload: [...view.subarray(start, start + length)],
    });
    off = start + length;
  }
  return { frames, error: undefined, rest: view.length - off };
}

/** `bytes` cut at `cuts` (any order, duplicates give empty chunks). */
function chunked(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...cuts.map((c) => c % (bytes.length + 1)), bytes.length].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let prev = 0;
  for (const p of points) {
    chunks.push(bytes.subarray(prev, p));
    prev = p;
  }
  return chunks;
}

const validFrame = fc.record({
  streamId: fc.nat({ max: 0xffff_ffff }),
  type: fc.constantFrom(FrameType.Request, FrameType.Response, FrameType.Data),
  flags: fc.nat({ max: 0xff }),
  payload: fc.uint8Array({ maxLength: maxFrameBytes }),
});

/** A header with any length and type, so that both limits and unknown types come up often. */
const anyHeader = fc
  .record({
    length: fc.oneof(fc.nat({ max: maxFrameBytes + 2 }), fc.nat({ max: 0xffff_ffff })),
    streamId: fc.nat({ max: 0xffff_ffff }),
    type: fc.nat({ max: 0xff }),
    flags: fc.nat({ max: 0xff }),
  })
  .map(({ length, streamId, type, flags }) => {
    const b = Buffer.alloc(frameHeaderBytes);
    b.writeUInt32BE(length, 0);
    b.writeUInt32BE(streamId, 4);
    b[8] = type;
    b[9] = flags;
    return new Uint8Array(b);
  });

/** A byte stream made of valid frames, loose headers and raw garbage, in any order. */
const hostileStream = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: validFrame.map((f) => new Uint8Array(encodeFrame(f, maxFrameBytes))) },
      { weight: 1, arbitrary: anyHeader },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
    ),
    { maxLength: 12 },
  )
  .map((parts) => new Uint8Array(Buffer.concat(parts)));

describe("FrameDecoder (fuzz)", () => {
  it("decodes any byte stream cut anywhere as the whole-buffer reference does, within the limit", () => {
    fc.assert(
      fc.property(hostileStream, fc.array(fc.nat(), { maxLength: 16 }), (bytes, cuts) => {
        const want = reference(bytes, maxFrameBytes);
        const decoder = new FrameDecoder({ maxFrameBytes });
        const got: Plain[] = [];
        let failure: string | undefined;

        for (const chunk of chunked(bytes, cuts)) {
          const r = onlyKataError(() => {
            decoder.push(chunk, (f) => got.push(plain(f)));
          });
          assert.ok(decoder.bufferedBytes <= maxFrameBytes + frameHeaderBytes, `buffered ${decoder.bufferedBytes}`);
          if (!r.ok) {
            failure = r.error.code;
            break;
          }
        }
        const end = onlyKataError(() => {
          decoder.end();
        });

        assert.deepEqual(got, want.frames);
        assert.equal(failure, want.error);
        if (want.error !== undefined) {
          // Poisoned: the position in the stream is lost, so every later call fails the same way.
          assert.ok(!end.ok && end.error.code === want.error);
          assert.throws(() => {
            decoder.push(new Uint8Array(1), () => assert.fail("no frame after a failure"));
          }, isKataError);
        } else if (want.rest > 0) {
          assert.ok(!end.ok && end.error.code === Code.Unavailable, "a stream ending inside a frame is reported");
        } else {
          assert.ok(end.ok);
          assert.equal(decoder.bufferedBytes, 0);
        }
      }),
      fuzzParams(500),
    );
  });

  it("round-trips frames encoded by encodeFrame however the bytes are chunked", () => {
    fc.assert(
      fc.property(fc.array(validFrame, { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 24 }), (frames, cuts) => {
        const bytes = new Uint8Array(Buffer.concat(frames.map((f) => encodeFrame(f, maxFrameBytes))));
        const decoder = new FrameDecoder({ maxFrameBytes });
        const got: Plain[] = [];

        for (const chunk of chunked(bytes, cuts)) decoder.push(chunk, (f) => got.push(plain(f)));
        decoder.end();

        assert.deepEqual(
          got,
          frames.map((f) => plain(f)),
        );
        assert.equal(decoder.bufferedBytes, 0);
      }),
      fuzzParams(500),
    );
  });

  it("readFrames yields the same frames from an async source, then the decoder's error", async () => {
    await fc.assert(
      fc.asyncProperty(hostileStream, fc.array(fc.nat(), { maxLength: 8 }), async (bytes, cuts) => {
        const want = reference(bytes, maxFrameBytes);
        const got: Plain[] = [];
        let code: string | undefined;

        try {
          for await (const f of readFrames(
            (async function* () {
              for (const c of chunked(bytes, cuts)) yield await Promise.resolve(c);
            })(),
            { maxFrameBytes },
          )) {
            got.push(plain(f));
          }
        } catch (e) {
          assert.ok(isKataError(e), String(e));
          code = e.code;
        }

        assert.deepEqual(got, want.frames);
        assert.equal(code, want.error ?? (want.rest > 0 ? Code.Unavailable : undefined));
      }),
      fuzzParams(200),
    );
  });
});
