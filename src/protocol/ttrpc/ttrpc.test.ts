// Component tests: TtrpcConnection and TtrpcServer over a real unix socket in a temporary directory.

import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { TestContext } from "node:test";
import { deferred } from "../../base/async.js";
import { Code, KataError, describeError, isKataError } from "../../base/errors.js";
import { fromBinary } from "@bufbuild/protobuf";
import { AgentService } from "../gen/agent_pb.js";
import { ResponseSchema } from "../gen/ttrpc/request_pb.js";
import { Health } from "../gen/health_pb.js";
import { TtrpcConnection, createClient } from "./client.js";
import type { TtrpcConnectionOptions } from "./client.js";
import { FrameDecoder, FrameType, encodeFrame } from "./frame.js";
import type { Frame } from "./frame.js";
import { TtrpcServer } from "./server.js";

interface Env {
  readonly path: string;
  /** serve() promises, one per accepted connection, in accept order. */
  readonly serves: Promise<void>[];
  /** Server-side sockets, in accept order. */
  readonly accepted: net.Socket[];
  connect(opts?: TtrpcConnectionOptions): Promise<TtrpcConnection>;
  /** Resolves with the next accepted server-side socket. */
  nextAccepted(): Promise<net.Socket>;
}

async function startServer(t: TestContext, server: TtrpcServer): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), "kata-ts-ttrpc-"));
  const path = join(dir, "ttrpc.sock");
  const serves: Promise<void>[] = [];
  const accepted: net.Socket[] = [];
  const clients: TtrpcConnection[] = [];
  let waiter = deferred<net.Socket>();
  const netServer = net.createServer((sock) => {
    accepted.push(sock);
    serves.push(server.serve(sock));
    waiter.resolve(sock);
    waiter = deferred<net.Socket>();
  });
  netServer.listen(path);
  await once(netServer, "listening");
  t.after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    for (const s of accepted) s.destroy();
    netServer.close();
    await once(netServer, "close");
    await Promise.all(serves);
    await rm(dir, { recursive: true, force: true });
  });
  return {
    path,
    serves,
    accepted,
    async connect(opts) {
      const sock = net.createConnection(path);
      await once(sock, "connect");
      const conn = new TtrpcConnection(sock, opts);
      clients.push(conn);
      return conn;
    },
    nextAccepted: () => waiter.promise,
  };
}

/** A broken implementation fails the test instead of hanging on an awaited event. */
const bounded = { timeout: 10_000 };

describe("ttrpc client and server over a unix socket", () => {
  it("answers a unary call with the handler's response, passing the request and metadata", bounded, async (t) => {
    const server = new TtrpcServer();
    const seen = deferred<{ containerId: string; storages: number; rootPath: string; md: string[] }>();
    server.register(AgentService, {
      createContainer(req, ctx) {
        seen.resolve({
          containerId: req.containerId,
          storages: req.storages.length,
          rootPath: req.OCI?.Root?.Path ?? "",
          md: ctx.metadata.get("x-trace") ?? [],
        });
        return Promise.resolve({});
      },
      getGuestDetails(req) {
        return Promise.resolve({
          memBlockSizeBytes: req.memBlockSize ? 128n << 20n : 0n,
          agentDetails: { version: "0.1.0" },
        });
      },
    });
    const env = await startServer(t, server);
    const agent = createClient(AgentService, await env.connect());

    await agent.createContainer(
      { containerId: "c1", storages: [{ driver: "9p" }], OCI: { Root: { Path: "/run/c1/rootfs" } } },
      { timeoutMs: 10_000, metadata: { "x-trace": ["a", "b"] } },
    );
    const details = await agent.getGuestDetails({ memBlockSize: true });

    assert.deepEqual(await seen.promise, {
      containerId: "c1",
      storages: 1,
      rootPath: "/run/c1/rootfs",
      md: ["a", "b"],
    });
    assert.equal(details.memBlockSizeBytes, 134217728n);
    assert.equal(details.agentDetails?.version, "0.1.0");
  });

  it("multiplexes 50 concurrent calls completing out of order, each getting its own answer", bounded, async (t) => {
    const server = new TtrpcServer();
    const gates = new Map<string, () => void>();
    const allArrived = deferred<undefined>();
    server.register(AgentService, {
      async waitProcess(req) {
        const gate = deferred<undefined>();
        gates.set(req.execId, () => {
          gate.resolve(undefined);
        });
        if (gates.size === 50) allArrived.resolve(undefined);
        await gate.promise;
        return { status: Number(req.execId.slice(1)) };
      },
    });
    const env = await startServer(t, server);
    const agent = createClient(AgentService, await env.connect());
    const completed: number[] = [];

    const calls = Array.from({ length: 50 }, (_, i) =>
      agent.waitProcess({ containerId: "c1", execId: `e${i}` }).then((res) => {
        completed.push(res.status);
        return res.status;
      }),
    );
    await allArrived.promise;
    // Release in a fixed scrambled order (i * 7 mod 50 is a permutation) so completion is out of order.
    const releaseOrder = Array.from({ length: 50 }, (_, i) => (i * 7) % 50);
    for (const i of releaseOrder) gates.get(`e${i}`)?.();
    const results = await Promise.all(calls);

    assert.deepEqual(
      results,
      Array.from({ length: 50 }, (_, i) => i),
    );
    assert.deepEqual(completed, releaseOrder);
    assert.equal(env.accepted.length, 1);
  });

  it("idle() waits for the handlers of every connection, and resolves at once when none runs", bounded, async (t) => {
    const server = new TtrpcServer();
    await server.idle();
    const gates = new Map<string, () => void>();
    const arrived = deferred<undefined>();
    server.register(AgentService, {
      async waitProcess(req) {
        const gate = deferred<undefined>();
        gates.set(req.execId, () => {
          gate.resolve(undefined);
        });
        if (gates.size === 2) arrived.resolve(undefined);
        await gate.promise;
        return { status: 0 };
      },
    });
    const env = await startServer(t, server);
    const a = createClient(AgentService, await env.connect());
    const b = createClient(AgentService, await env.connect());
    const calls = [a.waitProcess({ execId: "e1" }), b.waitProcess({ execId: "e2" })];
    await arrived.promise;
    let idle = false;
    const waiting = server.idle().then(() => {
      idle = true;
    });
    gates.get("e1")?.();
    await calls[0];
    assert.equal(idle, false, "one handler still runs on the other connection");
    gates.get("e2")?.();
    await Promise.all([...calls, waiting]);
    assert.equal(idle, true);
  });

  it("delivers a handler's KataError with its code and message", bounded, async (t) => {
    const server = new TtrpcServer();
    server.register(AgentService, {
      startContainer(req) {
        return Promise.reject(new KataError(Code.NotFound, `container ${req.containerId} not found`));
      },
      pauseContainer() {
        return Promise.reject(new Error("plain bug"));
      },
    });
    const env = await startServer(t, server);
    const agent = createClient(AgentService, await env.connect());

    await assert.rejects(agent.startContainer({ containerId: "c9" }), (e) => {
      assert.ok(isKataError(e, Code.NotFound));
      assert.equal(e.message, "grpc.AgentService/StartContainer");
      assert.equal(describeError(e), "grpc.AgentService/StartContainer: container c9 not found");
      return true;
    });
    await assert.rejects(
      agent.pauseContainer({ containerId: "c9" }),
      (e) => isKataError(e, Code.Internal) && /plain bug/.test(describeError(e)),
    );
  });

  it("answers UNIMPLEMENTED for a method or service without a handler", bounded, async (t) => {
    const server = new TtrpcServer();
    server.register(AgentService, { startContainer: () => Promise.resolve({}) });
    const env = await startServer(t, server);
    const conn = await env.connect();

    await assert.rejects(
      createClient(AgentService, conn).removeContainer({ containerId: "c1" }),
      (e) => isKataError(e, Code.Unimplemented) && /RemoveContainer: not implemented/.test(describeError(e)),
    );
    await assert.rejects(createClient(Health, conn).check({}), (e) => isKataError(e, Code.Unimplemented));
    await createClient(AgentService, conn).startContainer({ containerId: "c1" });
  });

  it("answers INVALID_ARGUMENT naming the method when the payload does not decode", bounded, async (t) => {
    const server = new TtrpcServer();
    server.register(AgentService, { createContainer: () => assert.fail("handler must not run") });
    const env = await startServer(t, server);
    const conn = await env.connect();

    await assert.rejects(
      conn.call("grpc.AgentService", "CreateContainer", Buffer.from([0xff, 0xff])),
      (e) =>
        isKataError(e, Code.InvalidArgument) &&
        /grpc\.AgentService\/CreateContainer: decode request/.test(describeError(e)),
    );
  });

  it(
    "times out a call with DEADLINE_EXCEEDED and aborts the handler's signal at the sent deadline",
    bounded,
    async (t) => {
      const server = new TtrpcServer();
      const handlerAbort = deferred<unknown>();
      server.register(AgentService, {
        async waitProcess(_req, ctx) {
          await once(ctx.signal, "abort");
          handlerAbort.resolve(ctx.signal.reason);
          return { status: 0 };
        },
      });
      const env = await startServer(t, server);
      const agent = createClient(AgentService, await env.connect());

      await assert.rejects(
        agent.waitProcess({ containerId: "c1", execId: "e1" }, { timeoutMs: 30 }),
        (e) => isKataError(e, Code.DeadlineExceeded) && /WaitProcess/.test(e.message),
      );
      const reason = await handlerAbort.promise;

      assert.ok(isKataError(reason, Code.DeadlineExceeded), describeError(reason));
    },
  );

  it("rejects an aborted call with CANCELLED and ignores its late response", bounded, async (t) => {
    const server = new TtrpcServer();
    const release = deferred<undefined>();
    const started = deferred<undefined>();
    const answered = deferred<undefined>();
    server.register(AgentService, {
      async waitProcess() {
        started.resolve(undefined);
        await release.promise;
        setImmediate(() => {
          answered.resolve(undefined);
        });
        return { status: 7 };
      },
      startContainer: () => Promise.resolve({}),
    });
    const env = await startServer(t, server);
    const agent = createClient(AgentService, await env.connect());
    const ac = new AbortController();

    const call = agent.waitProcess({ containerId: "c1", execId: "e1" }, { signal: ac.signal });
    await started.promise;
    ac.abort();
    await assert.rejects(call, (e) => isKataError(e, Code.Cancelled));
    release.resolve(undefined);
    await answered.promise;

    await agent.startContainer({ containerId: "c1" });
    await assert.rejects(agent.startContainer({ containerId: "c1" }, { signal: AbortSignal.abort() }), (e) =>
      isKataError(e, Code.Cancelled),
    );
  });

  it(
    "rejects pending calls with UNAVAILABLE when the server side closes, and aborts the handler",
    bounded,
    async (t) => {
      const server = new TtrpcServer();
      const started = deferred<AbortSignal>();
      server.register(AgentService, {
        async waitProcess(_req, ctx) {
          started.resolve(ctx.signal);
          await once(ctx.signal, "abort");
          return { status: 0 };
        },
      });
      const env = await startServer(t, server);
      const accepted = env.nextAccepted();
      const conn = await env.connect();
      const agent = createClient(AgentService, conn);

      const pending = [
        agent.waitProcess({ containerId: "c1", execId: "e1" }),
        agent.waitProcess({ containerId: "c1", execId: "e2" }),
      ];
      const handlerSignal = await started.promise;
      (await accepted).destroy();

      for (const p of pending) {
        await assert.rejects(p, (e) => isKataError(e, Code.Unavailable) && /connection closed/.test(e.message));
      }
      await conn.closed;
      await assert.rejects(agent.waitProcess({ containerId: "c1", execId: "e3" }), (e) =>
        isKataError(e, Code.Unavailable),
      );
      await env.serves[0];
      assert.ok(handlerSignal.aborted);
    },
  );

  it("turns a response over the frame limit into RESOURCE_EXHAUSTED and keeps the connection", bounded, async (t) => {
    const server = new TtrpcServer({ maxFrameBytes: 1024 });
    server.register(AgentService, {
      readStdout: (req) => Promise.resolve({ data: new Uint8Array(req.len) }),
    });
    const env = await startServer(t, server);
    const agent = createClient(AgentService, await env.connect());

    await assert.rejects(
      agent.readStdout({ containerId: "c1", execId: "e1", len: 4096 }),
      (e) =>
        isKataError(e, Code.ResourceExhausted) && /exceeds the ttrpc frame limit of 1024 bytes/.test(describeError(e)),
    );
    const small = await agent.readStdout({ containerId: "c1", execId: "e1", len: 16 });

    assert.equal(small.data.length, 16);
  });

  it("refuses to send a request over the frame limit", bounded, async (t) => {
    const server = new TtrpcServer();
    server.register(AgentService, { writeStdin: () => assert.fail("must not be sent") });
    const env = await startServer(t, server);
    const agent = createClient(AgentService, await env.connect({ maxFrameBytes: 64 }));

    await assert.rejects(agent.writeStdin({ containerId: "c1", execId: "e1", data: new Uint8Array(100) }), (e) =>
      isKataError(e, Code.ResourceExhausted),
    );
  });

  it("disconnects a client that declares an oversize frame, and serve() resolves", bounded, async (t) => {
    const server = new TtrpcServer();
    const env = await startServer(t, server);
    const accepted = env.nextAccepted();
    const sock = net.createConnection(env.path);
    await once(sock, "connect");
    const closed = once(sock, "close");
    sock.on("error", () => undefined);

    const header = Buffer.alloc(10);
    header.writeUInt32BE(5 << 20, 0);
    header.writeUInt32BE(1, 4);
    header[8] = FrameType.Request;
    sock.write(header);
    await accepted;
    await env.serves[0];
    await closed;

    assert.equal(env.accepted[0]?.destroyed, true);
  });

  it("answers a request with an even stream id with INVALID_ARGUMENT on that stream", bounded, async (t) => {
    const server = new TtrpcServer();
    const env = await startServer(t, server);
    const sock = net.createConnection(env.path);
    await once(sock, "connect");
    t.after(() => sock.destroy());

    const reply = deferred<Frame>();
    const decoder = new FrameDecoder();
    sock.on("data", (chunk: Buffer) => {
      decoder.push(chunk, (f) => {
        reply.resolve(f);
      });
    });

    sock.write(encodeFrame({ streamId: 2, type: FrameType.Request, flags: 0, payload: new Uint8Array(0) }));
    const frame = await reply.promise;
    const response = fromBinary(ResponseSchema, frame.payload);

    assert.equal(frame.streamId, 2);
    assert.equal(frame.type, FrameType.Response);
    assert.equal(response.status?.code, 3);
    assert.match(response.status.message, /stream id 2 must be odd/);
  });
});
