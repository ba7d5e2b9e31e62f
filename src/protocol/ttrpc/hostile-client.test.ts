// Component tests: the ttRPC server (as the guest agent and the host service run it) against hostile
// clients on a real unix socket. The hostile client is raw bytes written by the test. Oversized and
// garbage frames close that connection with a warning; a client stalled inside a frame blocks nobody
// else; a flood of requests is bounded by maxInFlightRequests, and a client that never reads its
// responses stops being read from.

import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { TestContext } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { deferred, type Deferred } from "../../base/async.js";
import { JsonLogger } from "../../base/log.js";
import { AgentService } from "../gen/agent_pb.js";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/request_pb.js";
import { TtrpcConnection, createClient } from "./client.js";
import { FrameDecoder, FrameType, encodeFrame } from "./frame.js";
import { TtrpcServer, maxInFlightRequests, maxQueuedResponseBytes } from "./server.js";

interface Served {
  readonly path: string;
  /** Log lines of the server, as JSON objects. */
  readonly logs: Record<string, unknown>[];
  /** Resolves with the first log line whose message is `msg`. */
  logged(msg: string): Promise<Record<string, unknown>>;
  /** The server's end of each accepted connection and its serve() promise, in accept order. */
  readonly connections: { socket: net.Socket; done: Promise<void> }[];
  /** Resolves with the `i`-th accepted connection (from 0). */
  connection(i: number): Promise<{ socket: net.Socket; done: Promise<void> }>;
  /** A raw client: whatever the test writes goes to the server as is. */
  raw(): Promise<net.Socket>;
}

async function serve(t: TestContext, server: (logger: JsonLogger) => TtrpcServer): Promise<Served> {
  const dir = await mkdtemp(join(tmpdir(), "kata-ts-hostile-"));
  const path = join(dir, "server.sock");
  const logs: Record<string, unknown>[] = [];
  const watches: { msg: string; seen: (l: Record<string, unknown>) => void }[] = [];
  const logger = new JsonLogger(
    (line) => {
      // CAST: JsonLogger writes one JSON object per line.
      const l = JSON.parse(line) as Record<string, unknown>;
      logs.push(l);
      for (const w of watches) if (w.msg === l["msg"]) w.seen(l);
    },
    { level: "debug" },
  );
  const s = server(logger);
  const connections: { socket: net.Socket; done: Promise<void> }[] = [];
  const accepted: Deferred<{ socket: net.Socket; done: Promise<void> }>[] = [];
  const slot = (i: number): Deferred<{ socket: net.Socket; done: Promise<void> }> => (accepted[i] ??= deferred());
  const listener = net.createServer((socket) => {
    const c = { socket, done: s.serve(socket) };
    slot(connections.length).resolve(c);
    connections.push(c);
  });
  listener.listen(path);
  await once(listener, "listening");
  const clients: net.Socket[] = [];
  t.after(async () => {
    for (const c of clients) c.destroy();
    for (const c of connections) c.socket.destroy();
    listener.close();
    await Promise.all(connections.map((c) => c.done));
    await rm(dir, { recursive: true, force: true });
  });
  return {
    path,
    logs,
    logged(msg) {
      const found = logs.find((l) => l["msg"] === msg);
      if (found !== undefined) return Promise.resolve(found);
      const d = deferred<Record<string, unknown>>();
      watches.push({
        msg,
        seen: (l) => {
          d.resolve(l);
        },
      });
      return d.promise;
    },
    connections,
    connection: (i) => slot(i).promise,
    async raw() {
      const sock = net.createConnection(path);
      clients.push(sock);
      await once(sock, "connect");
      return sock;
    },
  };
}

function request(streamId: number, method: string, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const req = create(RequestSchema, { service: "grpc.AgentService", method, payload });
  return encodeFrame({ streamId, type: FrameType.Request, flags: 0, payload: toBinary(RequestSchema, req) });
}

interface Responses {
  /** Status of each response so far, by stream id. */
  readonly byStream: Map<number, { code: number; message: string }>;
  /** Resolves once `n` responses have arrived. */
  count(n: number): Promise<void>;
}

/** Decodes the responses arriving on `sock`. */
function responses(sock: net.Socket): Responses {
  const byStream = new Map<number, { code: number; message: string }>();
  let want = { n: Infinity, reached: deferred<undefined>() };
  const decoder = new FrameDecoder();
  sock.on("data", (chunk: Buffer) => {
    decoder.push(chunk, (f) => {
      const r = fromBinary(ResponseSchema, f.payload);
      byStream.set(f.streamId, { code: r.status?.code ?? 0, message: r.status?.message ?? "" });
    });
    if (byStream.size >= want.n) want.reached.resolve(undefined);
  });
  return {
    byStream,
    count(n) {
      want = { n, reached: deferred<undefined>() };
      if (byStream.size >= n) want.reached.resolve(undefined);
      return want.reached.promise;
    },
  };
}

/** For state that no event announces (a stream's pause flag): checked once per event loop turn. */
async function eventually(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

const agent = (logger: JsonLogger): TtrpcServer => {
  const s = new TtrpcServer({ logger });
  s.register(AgentService, { startContainer: () => Promise.resolve({}) });
  return s;
};

const bounded = { timeout: 20_000 };

describe("ttrpc server against hostile clients", () => {
  for (const [what, bytes, why] of [
    ["a frame declared over the limit", Buffer.from([0, 0x40, 0, 1, 0, 0, 0, 1, 1, 0]), /exceeds the limit/],
    [
      "garbage",
      Buffer.from("\u0000\u0000\u0000\u0004\u0000\u0000\u0000\u0001GET / HTTP/1.1\r\n"),
      /unknown ttrpc frame type 71/,
    ],
  ] as const) {
    it(`closes a connection that sends ${what}, logs why, and serves the others`, bounded, async (t) => {
      const env = await serve(t, agent);
      const good = createClient(AgentService, new TtrpcConnection(await env.raw()));
      const sock = await env.raw();
      const closed = once(sock, "close");

      sock.write(bytes);
      const warn = await env.logged("ttrpc: bad frame from client, closing the connection");
      await closed;
      await env.connections[1]?.done;

      assert.equal(warn["level"], "warn");
      assert.match(JSON.stringify(warn["err"]), why);
      await good.startContainer({ containerId: "c1" });
    });
  }

  it("keeps serving other connections while one client is stalled inside a frame", bounded, async (t) => {
    const env = await serve(t, agent);
    const stalled = await env.raw();
    const accepted = await env.connection(0);
    // A request of almost 4 MiB (within the limit), of which 100 bytes ever come.
    stalled.write(Buffer.concat([Buffer.from([0, 0x3f, 0xff, 0xf0, 0, 0, 0, 1, 1, 0]), Buffer.alloc(100)]));

    const good = createClient(AgentService, new TtrpcConnection(await env.raw()));
    await good.startContainer({ containerId: "c1" });
    await good.startContainer({ containerId: "c2" });

    assert.ok(!accepted.socket.destroyed, "the stalled client is only slow, not wrong");
    stalled.destroy();
    await accepted.done;
  });

  it(
    `answers RESOURCE_EXHAUSTED beyond ${maxInFlightRequests} requests in flight, then serves again`,
    bounded,
    async (t) => {
      const gate = deferred<undefined>();
      let running = 0;
      const env = await serve(t, (logger) => {
        const s = new TtrpcServer({ logger });
        s.register(AgentService, {
          async waitProcess() {
            running++;
            await gate.promise;
            return { status: 0 };
          },
        });
        return s;
      });
      const sock = await env.raw();
      const got = responses(sock);
      const n = maxInFlightRequests + 72;

      sock.write(Buffer.concat(Array.from({ length: n }, (_, i) => request(2 * i + 1, "WaitProcess"))));
      await got.count(n - maxInFlightRequests);

      assert.equal(running, maxInFlightRequests);
      for (let i = maxInFlightRequests; i < n; i++) {
        const r = got.byStream.get(2 * i + 1);
        assert.equal(r?.code, 8, `stream ${2 * i + 1} is RESOURCE_EXHAUSTED`);
        assert.match(
          r.message,
          new RegExp(`WaitProcess: ${maxInFlightRequests} requests are already in flight on this connection`),
        );
      }
      gate.resolve(undefined);
      await got.count(n);
      assert.equal(got.byStream.get(1)?.code, 0);
      sock.write(request(2 * n + 1, "WaitProcess"));
      await got.count(n + 1);
      assert.equal(got.byStream.get(2 * n + 1)?.code, 0, "a slot is free again");
    },
  );

  it(
    "stops reading from a client that does not read its responses, and catches up when it does",
    bounded,
    async (t) => {
      const env = await serve(t, agent);
      const sock = await env.raw();
      const accepted = await env.connection(0);
      sock.pause();
      // Each request names an unknown method of 1 KiB, and is answered at once with UNIMPLEMENTED quoting
      // it: 3000 of them queue about 3 MiB of answers, more than the limit plus what the kernel buffers.
      const n = 3000;
      const method = `NoSuchMethod${"x".repeat(1024)}`;
      const flood = Buffer.concat(Array.from({ length: n }, (_, i) => request(2 * i + 1, method)));

      sock.write(flood);
      await env.logged("ttrpc: client is not reading its responses, pausing requests");
      const queued = accepted.socket.writableLength;

      assert.ok(accepted.socket.isPaused());
      // Past the limit by at most what one chunk of requests (64 KiB) asks for.
      assert.ok(queued > maxQueuedResponseBytes && queued < maxQueuedResponseBytes + (1 << 20), `${queued} bytes`);
      const got = responses(sock);
      sock.resume();
      await got.count(n);
      assert.ok([...got.byStream.values()].every((r) => r.code === 12));
      await eventually(() => !accepted.socket.isPaused());
    },
  );
});
