// A byte stream without connection boundaries (the guest's virtio-serial port): a host that reconnects
// starts its stream ids at 1 again on what the server sees as the same connection.

import assert from "node:assert/strict";
import { PassThrough, Duplex } from "node:stream";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CheckRequestSchema, Health, HealthCheckResponse_ServingStatus } from "../gen/health_pb.js";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/request_pb.js";
import { FrameDecoder, FrameType, encodeFrame, type Frame } from "./frame.js";
import { TtrpcServer } from "./server.js";

/** A duplex whose written bytes the test reads, and whose readable side the test feeds. */
function pipePair(): { serverSide: Duplex; toServer: PassThrough; fromServer: PassThrough } {
  const toServer = new PassThrough();
  const fromServer = new PassThrough();
  const serverSide = Duplex.from({ readable: toServer, writable: fromServer });
  return { serverSide, toServer, fromServer };
}

function request(streamId: number): Buffer {
  const payload = toBinary(
    RequestSchema,
    create(RequestSchema, {
      service: "grpc.Health",
      method: "Check",
      payload: toBinary(CheckRequestSchema, create(CheckRequestSchema, {})),
    }),
  );
  return encodeFrame({ streamId, type: FrameType.Request, flags: 0, payload });
}

/** The status code of each response, in the order they came: [streamId, code]. */
async function answers(newClientOnStreamOne: boolean, ids: number[]): Promise<[number, number][]> {
  const server = new TtrpcServer({ newClientOnStreamOne });
  server.register(Health, {
    check: () => Promise.resolve({ status: HealthCheckResponse_ServingStatus.SERVING }),
  });
  const { serverSide, toServer, fromServer } = pipePair();
  void server.serve(serverSide);
  const codes: [number, number][] = [];
  const decoder = new FrameDecoder();
  const got = new Promise<void>((resolve) => {
    fromServer.on("data", (chunk: Buffer) => {
      decoder.push(chunk, (f: Frame) => {
        codes.push([f.streamId, fromBinary(ResponseSchema, f.payload).status?.code ?? 0]);
        if (codes.length === ids.length) resolve();
      });
    });
  });
  for (const id of ids) toServer.write(request(id));
  await got;
  toServer.end();
  return codes;
}

describe("TtrpcServer newClientOnStreamOne", () => {
  it("refuses stream id 1 after higher ids on one connection by default", async () => {
    const codes = await answers(false, [1, 3, 5, 1]);

    // The refusal goes out at once, before the handlers' answers: compare regardless of order.
    assert.deepEqual(codes.map(([id, code]) => `${id}:${code}`).sort(), ["1:0", "1:3", "3:0", "5:0"]);
  });

  it("serves stream id 1 after higher ids as a new client when asked to", async () => {
    const codes = await answers(true, [1, 3, 5, 1]);

    assert.deepEqual(codes.map(([id, code]) => `${id}:${code}`).sort(), ["1:0", "1:0", "3:0", "5:0"]);
  });
});
