// Component tests: the ttRPC client (TtrpcConnection, as the host uses it towards the guest agent) against
// a hostile peer on a real unix socket. The peer is raw bytes written by the test, not a ttRPC server: it
// declares oversized frames, sends garbage, stalls inside a frame and floods unsolicited responses. The
// client must keep its memory bounded, fail with one clear UNAVAILABLE, reject what was pending, and never
// leave a rejection unhandled.

import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { TestContext } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { deferred } from "../../base/async.js";
import { Code, describeError, isKataError } from "../../base/errors.js";
import { ResponseSchema } from "../gen/ttrpc/request_pb.js";
import { TtrpcConnection } from "./client.js";
import { FrameDecoder, FrameType, defaultMaxFrameBytes, encodeFrame, frameHeaderBytes } from "./frame.js";
import type { Frame } from "./frame.js";

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => {
  unhandled.push(e);
};
process.on("unhandledRejection", onUnhandled);
after(() => {
  process.off("unhandledRejection", onUnhandled);
  assert.deepEqual(unhandled, [], "no rejection was left unhandled");
});

interface HostilePeer {
  /** The peer's end of the connection: the test writes whatever it likes to it. */
  readonly socket: net.Socket;
  readonly errors: readonly Error[];
  /** Request frames the client sent, in order. */
  readonly requests: Frame[];
  /** Resolves with the next request frame. */
  nextRequest(): Promise<Frame>;
}

/** A client connected to a listener whose only connection the test drives byte by byte. */
async function connect(t: TestContext): Promise<{ conn: TtrpcConnection; peer: HostilePeer }> {
  const dir = await mkdtemp(join(tmpdir(), "kata-ts-hostile-"));
  const path = join(dir, "peer.sock");
  const accepted = deferred<net.Socket>();
  const listener = net.createServer((s) => {
    accepted.resolve(s);
  });
  listener.listen(path);
  await once(listener, "listening");
  const conn = new TtrpcConnection(net.createConnection(path));
  const socket = await accepted.promise;
  // The client resets the connection in several tests: that is the behaviour under test, so the peer's
  // socket errors are kept for inspection instead of failing the run.
  const errors: Error[] = [];
  socket.on("error", (e) => errors.push(e));
  const requests: Frame[] = [];
  let waiter = deferred<Frame>();
  const decoder = new FrameDecoder();
  socket.on("data", (chunk: Buffer) => {
    decoder.push(chunk, (f) => {
      requests.push(f);
      waiter.resolve(f);
      waiter = deferred<Frame>();
    });
  });
  t.after(async () => {
    await conn.close();
    socket.destroy();
    listener.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { conn, peer: { socket, requests, errors, nextRequest: () => waiter.promise } };
}

function header(lengthBytes: number, streamId: number, type: number): Buffer {
  const b = Buffer.alloc(frameHeaderBytes);
  b.writeUInt32BE(lengthBytes, 0);
  b.writeUInt32BE(streamId, 4);
  b[8] = type;
  return b;
}

function response(streamId: number, payload: Uint8Array): Buffer {
  const bytes = toBinary(ResponseSchema, create(ResponseSchema, { payload }));
  return encodeFrame({ streamId, type: FrameType.Response, flags: 0, payload: bytes });
}

/** The pending call's rejection: UNAVAILABLE, with the cause chain that explains it. */
async function unavailable(call: Promise<unknown>, why: RegExp): Promise<void> {
  await assert.rejects(call, (e) => {
    assert.ok(isKataError(e, Code.Unavailable), describeError(e));
    assert.match(describeError(e), why);
    return true;
  });
}

const bounded = { timeout: 10_000 };

describe("ttrpc client against a hostile server", () => {
  it("closes on a frame declared over the limit, before buffering any of it", bounded, async (t) => {
    const { conn, peer } = await connect(t);
    const call = conn.call("grpc.AgentService", "CreateContainer", new Uint8Array(1));
    const req = await peer.nextRequest();

    peer.socket.write(header(defaultMaxFrameBytes + 1, req.streamId, FrameType.Response));

    await unavailable(call, /protocol error: ttrpc frame of 4194305 bytes exceeds the limit of 4194304 bytes/);
    await conn.closed;
    assert.equal(conn.bufferedBytes, 0);
    await unavailable(conn.call("grpc.AgentService", "StartContainer", new Uint8Array(0)), /connection closed/);
  });

  it("closes on garbage, rejecting every pending call with the same protocol error", bounded, async (t) => {
    const { conn, peer } = await connect(t);
    const calls = [1, 2, 3].map(() => conn.call("grpc.AgentService", "WaitProcess", new Uint8Array(0)));
    while (peer.requests.length < 3) await peer.nextRequest();
    const peerClosed = once(peer.socket, "close");

    // A plausible length and stream id, then a type byte no ttRPC frame has (console noise, say).
    peer.socket.write(Buffer.concat([header(2, 1, 0x47), Buffer.from("ET / HTTP/1.1\r\n")]));
    const results = await Promise.allSettled(calls);

    for (const r of results) {
      assert.equal(r.status, "rejected");
      assert.ok(isKataError(r.reason, Code.Unavailable));
      assert.match(describeError(r.reason), /connection closed: ttrpc protocol error: unknown ttrpc frame type 71$/);
    }
    await peerClosed;
  });

  it(
    "holds at most one frame of a peer stalled inside it, times calls out, and fails them when it leaves",
    bounded,
    async (t) => {
      const { conn, peer } = await connect(t);
      const timed = conn.call("grpc.AgentService", "StatsContainer", new Uint8Array(0), { timeoutMs: 100 });
      const waiting = conn.call("grpc.AgentService", "WaitProcess", new Uint8Array(0));
      const req = await peer.nextRequest();

      peer.socket.write(Buffer.concat([header(1000, req.streamId, FrameType.Response), Buffer.alloc(10)]));
      await assert.rejects(timed, (e) => isKataError(e, Code.DeadlineExceeded));

      assert.equal(conn.bufferedBytes, frameHeaderBytes + 10);
      peer.socket.end();
      await unavailable(
        waiting,
        /closed the connection inside a frame: ttrpc stream ended inside a frame \(20 of 1010 bytes\)/,
      );
    },
  );

  it("drops a flood of unsolicited responses and still answers the pending call", bounded, async (t) => {
    const { conn, peer } = await connect(t);
    const call = conn.call("grpc.AgentService", "GetGuestDetails", new Uint8Array(0));
    const req = await peer.nextRequest();
    const junk = Array.from({ length: 20_000 }, (_, i) =>
      i % 3 === 0
        ? response(req.streamId + 2 * (i + 1), Buffer.alloc(64))
        : encodeFrame({
            streamId: i,
            type: i % 3 === 1 ? FrameType.Data : FrameType.Request,
            flags: 0,
            payload: Buffer.alloc(8),
          }),
    );

    peer.socket.write(
      Buffer.concat([...junk, response(req.streamId, Buffer.from("ok")), response(req.streamId, Buffer.from("again"))]),
    );
    const reply = await call;

    assert.equal(Buffer.from(reply).toString(), "ok");
    assert.equal(conn.bufferedBytes, 0);
    const next = conn.call("grpc.AgentService", "GetGuestDetails", new Uint8Array(0));
    const req2 = await peer.nextRequest();
    peer.socket.write(response(req2.streamId, Buffer.from("still open")));
    assert.equal(Buffer.from(await next).toString(), "still open");
  });

  it("fails a call whose response does not decode, and keeps the connection", bounded, async (t) => {
    const { conn, peer } = await connect(t);
    const call = conn.call("grpc.AgentService", "ListInterfaces", new Uint8Array(0));
    const req = await peer.nextRequest();

    peer.socket.write(
      encodeFrame({ streamId: req.streamId, type: FrameType.Response, flags: 0, payload: Buffer.from([0xff, 0xff]) }),
    );

    await assert.rejects(call, (e) => isKataError(e, Code.Internal) && /decode ttrpc response/.test(e.message));
    const next = conn.call("grpc.AgentService", "ListRoutes", new Uint8Array(0));
    peer.socket.write(response((await peer.nextRequest()).streamId, Buffer.from("fine")));
    assert.equal(Buffer.from(await next).toString(), "fine");
  });
});
