// ttRPC message framing: a 10-byte header (data length u32 BE | stream id u32 BE | type u8 | flags u8)
// followed by the data. https://github.com/containerd/ttrpc/blob/main/PROTOCOL.md
//
// Unknown frame types are an error that ends the connection. containerd's Go server skips them "for
// future compat", but protocol 1.2 defines only types 1-3, both of our peers (our own guest agent,
// containerd's ttrpc) send nothing else, and a type byte outside 1-3 far more likely means the byte
// stream lost sync (e.g. console noise on a virtio-serial port), after which lengths are garbage too.

import { Code, KataError } from "../../base/errors.js";

export const FrameType = { Request: 1, Response: 2, Data: 3 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Flags of Request and Data frames (PROTOCOL.md); unary calls send none. */
export const FrameFlag = { RemoteClosed: 0x1, RemoteOpen: 0x2, NoData: 0x4 } as const;

export const frameHeaderBytes = 10;
/** The protocol's maximum data length, and our default limit. */
export const defaultMaxFrameBytes = 4 << 20;
const maxU32 = 0xffff_ffff;

export interface Frame {
  readonly streamId: number;
  readonly type: FrameType;
  readonly flags: number;
  readonly payload: Uint8Array;
}

function isFrameType(t: number): t is FrameType {
  return t === FrameType.Request || t === FrameType.Response || t === FrameType.Data;
}

function tooLarge(lengthBytes: number, maxFrameBytes: number): KataError {
  return new KataError(
    Code.ResourceExhausted,
    `ttrpc frame of ${lengthBytes} bytes exceeds the limit of ${maxFrameBytes} bytes`,
    { details: { lengthBytes, maxFrameBytes } },
  );
}

/**
 * Header and data in one buffer, so that one `write()` puts a whole frame on the stream and frames
 * written by concurrent calls can never interleave.
 * Throws RESOURCE_EXHAUSTED when the payload exceeds `maxFrameBytes`, INVALID_ARGUMENT for a stream
 * id or flags that do not fit the header.
 */
export function encodeFrame(frame: Frame, maxFrameBytes: number = defaultMaxFrameBytes): Buffer {
  const { streamId, type, flags, payload } = frame;
  if (payload.length > maxFrameBytes) throw tooLarge(payload.length, maxFrameBytes);
  if (!Number.isInteger(streamId) || streamId < 0 || streamId > maxU32) {
    throw new KataError(Code.InvalidArgument, `ttrpc stream id ${streamId} is not a u32`);
  }
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xff) {
    throw new KataError(Code.InvalidArgument, `ttrpc frame flags ${flags} are not a u8`);
  }
  const buf = Buffer.allocUnsafe(frameHeaderBytes + payload.length);
  buf.writeUInt32BE(payload.length, 0);
  buf.writeUInt32BE(streamId, 4);
  buf.writeUInt8(type, 8);
  buf.writeUInt8(flags, 9);
  buf.set(payload, frameHeaderBytes);
  return buf;
}

/**
 * Incremental decoder: feed it chunks exactly as they arrive (partial headers, partial data, many
 * frames per chunk). The declared length is checked against the limit as soon as the header is
 * complete, before any data is buffered, so a peer cannot make us allocate more than the limit.
 * After the first error the decoder is poisoned: the position in the byte stream is lost, so every
 * later `push` throws that same error and the connection must be closed.
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  readonly #header = Buffer.alloc(frameHeaderBytes);
  #headerFill = 0;
  #current: { streamId: number; type: FrameType; flags: number; data: Buffer; fill: number } | undefined;
  #failure: KataError | undefined;

  constructor(opts: { maxFrameBytes?: number } = {}) {
    this.#maxFrameBytes = opts.maxFrameBytes ?? defaultMaxFrameBytes;
  }

  /** Bytes of an unfinished frame held so far (0 at a frame boundary). */
  get bufferedBytes(): number {
    return this.#current === undefined ? this.#headerFill : frameHeaderBytes + this.#current.fill;
  }

  /**
   * Decodes `chunk`, calling `onFrame` for each frame it completes, in order. A callback rather than
   * a returned array, so the frames before a bad header in the same chunk are still delivered.
   * Throws RESOURCE_EXHAUSTED (declared length over the limit) or INVALID_ARGUMENT (unknown type).
   */
  push(chunk: Uint8Array, onFrame: (frame: Frame) => void): void {
    if (this.#failure !== undefined) throw this.#failure;
    let off = 0;
    while (off < chunk.length) {
      const cur = this.#current;
      if (cur === undefined) {
        const n = Math.min(frameHeaderBytes - this.#headerFill, chunk.length - off);
        this.#header.set(chunk.subarray(off, off + n), this.#headerFill);
        this.#headerFill += n;
        off += n;
        if (this.#headerFill < frameHeaderBytes) return;
        this.#headerFill = 0;
        const frame = this.#startFrame();
        if (frame !== undefined) onFrame(frame);
        continue;
      }
      const n = Math.min(cur.data.length - cur.fill, chunk.length - off);
      cur.data.set(chunk.subarray(off, off + n), cur.fill);
      cur.fill += n;
      off += n;
      if (cur.fill === cur.data.length) {
        this.#current = undefined;
        onFrame({ streamId: cur.streamId, type: cur.type, flags: cur.flags, payload: cur.data });
      }
    }
  }

  /** Throws UNAVAILABLE when the stream ended inside a frame. */
  end(): void {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.bufferedBytes > 0) {
      const want = this.#current === undefined ? frameHeaderBytes : frameHeaderBytes + this.#current.data.length;
      throw new KataError(
        Code.Unavailable,
        `ttrpc stream ended inside a frame (${this.bufferedBytes} of ${want} bytes)`,
      );
    }
  }

  /** Validates the complete header; returns the frame at once when it has no data. */
  #startFrame(): Frame | undefined {
    const length = this.#header.readUInt32BE(0);
    const streamId = this.#header.readUInt32BE(4);
    const type = this.#header.readUInt8(8);
    const flags = this.#header.readUInt8(9);
    if (length > this.#maxFrameBytes) this.#fail(tooLarge(length, this.#maxFrameBytes));
    if (!isFrameType(type)) this.#fail(new KataError(Code.InvalidArgument, `unknown ttrpc frame type ${type}`));
    if (length === 0) return { streamId, type, flags, payload: new Uint8Array(0) };
    this.#current = { streamId, type, flags, data: Buffer.allocUnsafe(length), fill: 0 };
    return undefined;
  }

  #fail(e: KataError): never {
    this.#failure = e;
    throw e;
  }
}

/** Frames of a byte source (a socket, or arrays in tests); throws as `FrameDecoder` does. */
export async function* readFrames(
  source: AsyncIterable<Uint8Array>,
  opts: { maxFrameBytes?: number } = {},
): AsyncGenerator<Frame, void, undefined> {
  const decoder = new FrameDecoder(opts);
  for await (const chunk of source) {
    const frames: Frame[] = [];
    try {
      decoder.push(chunk, (f) => frames.push(f));
    } catch (e) {
      // Frames completed before the bad header are still the peer's valid output.
      yield* frames;
      throw e;
    }
    yield* frames;
  }
  decoder.end();
}
