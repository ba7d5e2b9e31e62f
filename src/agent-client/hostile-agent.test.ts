// Component tests: the host's AgentClient against a hostile guest on a real unix socket (the socket QEMU
// would expose). The guest side is raw bytes written by the test, not an agent: garbage, an oversized
// frame, a frame stalled midway, a flood of responses nobody asked for. Readiness and calls must end with
// one clear error, or succeed despite the noise, and leave no rejection unhandled.

import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { TestContext } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { deferred } from "../base/async.js";
import { Code, describeError, isKataError } from "../base/errors.js";
import { HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../protocol/gen/health_pb.js";
import { ResponseSchema } from "../protocol/gen/ttrpc/request_pb.js";
import { FrameDecoder, FrameType, encodeFrame, frameHeaderBytes } from "../protocol/ttrpc/frame.js";
import type { Frame } from "../protocol/ttrpc/frame.js";
import { AgentClient } from "./agent-client.js";

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => {
  unhandled.push(e);
};
process.on("unhandledRejection", onUnhandled);
after(() => {
  process.off("unhandledRejection", onUnhandled);
  assert.deepEqual(unhandled, [], "no rejection was left unhandled");
});

interface HostileGuest {
  readonly socket: net.Socket;
  nextRequest(): Promise<Frame>;
}

async function connect(t: TestContext): Promise<{ client: AgentClient; guest: HostileGuest }> {
  const dir = await mkdtemp(join(tmpdir(), "kata-ts-hostile-agent-"));
  const path = join(dir, "agent.sock");
  const accepted = deferred<net.Socket>();
  const listener = net.createServer((s) => {
    accepted.resolve(s);
  });
  listener.listen(path);
  await once(listener, "listening");
  const client = await AgentClient.connect(path, { signal: AbortSignal.timeout(5000) });
  const socket = await accepted.promise;
  // The client resets the connection in some tests: expected, kept rather than thrown.
  const errors: Error[] = [];
  socket.on("error", (e) => errors.push(e));
  let waiter = deferred<Frame>();
  const decoder = new FrameDecoder();
  socket.on("data", (chunk: Buffer) => {
    decoder.push(chunk, (f) => {
      waiter.resolve(f);
      waiter = deferred<Frame>();
    });
  });
  t.after(async () => {
    await client.close();
    socket.destroy();
    listener.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { client, guest: { socket, nextRequest: () => waiter.promise } };
}

function serving(streamId: number): Buffer {
  const health = toBinary(
    HealthCheckResponseSchema,
    create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING }),
  );
  const bytes = toBinary(ResponseSchema, create(ResponseSchema, { payload: health }));
  return encodeFrame({ streamId, type: FrameType.Response, flags: 0, payload: bytes });
}

const bounded = { timeout: 10_000 };

describe("AgentClient against a hostile guest", () => {
  it("fails waitReady at once with UNAVAILABLE when the guest sends garbage", bounded, async (t) => {
    const { client, guest } = await connect(t);
    const ready = client.waitReady(AbortSignal.timeout(5000));
    await guest.nextRequest();

    // A header whose type byte no frame has, then console noise.
    guest.socket.write(Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0]), Buffer.from("!login: ")]));

    await assert.rejects(ready, (e) => {
      assert.ok(isKataError(e, Code.Unavailable), describeError(e));
      assert.match(
        describeError(e),
        /grpc\.Health\/Check: connection closed: ttrpc protocol error: unknown ttrpc frame type 255/,
      );
      return true;
    });
    await client.closed;
    await assert.rejects(client.agent.startContainer({ containerId: "c1" }), (e) => isKataError(e, Code.Unavailable));
  });

  it("fails a pending call with UNAVAILABLE on a frame declared over the limit", bounded, async (t) => {
    const { client, guest } = await connect(t);
    const call = client.agent.startContainer({ containerId: "c1" }, { timeoutMs: 5000 });
    const req = await guest.nextRequest();
    const h = Buffer.alloc(frameHeaderBytes);
    h.writeUInt32BE(0xffff_ffff, 0);
    h.writeUInt32BE(req.streamId, 4);
    h[8] = FrameType.Response;

    guest.socket.write(h);

    await assert.rejects(call, (e) => isKataError(e, Code.Unavailable) && /exceeds the limit/.test(describeError(e)));
    await client.closed;
  });

  it("ends waitReady at its deadline when the guest stalls inside a frame, then closes cleanly", bounded, async (t) => {
    const { client, guest } = await connect(t);
    const ready = client.waitReady(AbortSignal.timeout(200));
    const req = await guest.nextRequest();

    guest.socket.write(serving(req.streamId).subarray(0, frameHeaderBytes + 2));

    await assert.rejects(ready, (e) => isKataError(e, Code.DeadlineExceeded) && /wait for the agent/.test(e.message));
    await client.close();
    await client.closed;
  });

  it("becomes ready through a flood of responses nobody asked for", bounded, async (t) => {
    const { client, guest } = await connect(t);
    const ready = client.waitReady(AbortSignal.timeout(5000));
    const req = await guest.nextRequest();
    const junk = Array.from({ length: 10_000 }, (_, i) => serving(req.streamId + 2 * (i + 1)));

    guest.socket.write(Buffer.concat([...junk, serving(req.streamId)]));

    await ready;
  });
});
