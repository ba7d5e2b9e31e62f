// Component test with a scripted peer, not a VM: the host's real AgentClient and the agent's real ttRPC
// server and Health service (guest/service.ts), joined through a unix socket by a script of the guest's
// virtio-serial port (ScriptedPort below). It replays, deterministically, the race a VM from the
// factory has (docs/factory.md#the-agents-port-sessions): the agent's port session that was open when
// the host connected ends at its first read, and the guest discards what the host sent meanwhile.
// The real-VM side of it is test/integration/factory*.test.ts.

import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Duplex } from "node:stream";
import { afterEach, beforeEach, describe, it } from "node:test";
import { delay } from "../base/async.js";
import { Code, isKataError } from "../base/errors.js";
import { registerHealth } from "../guest/service.js";
import { AgentService } from "../protocol/gen/agent_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../protocol/gen/health_pb.js";
import { TtrpcServer } from "../protocol/ttrpc/server.js";
import { AgentClient, runningAgentProbeIntervalMs } from "./agent-client.js";

/** What the first port session (open before the host connected) does. */
type FirstSession =
  /** Reads the host's first bytes and answers them; ends when more arrive, discarding those. */
  | "answers-then-ends"
  /** Ends at the host's first bytes, discarding them (the lost probe). */
  | "ends-at-once"
  /** Not open when the host connects: opens after `openAfterMs`, with the host connected (a boot). */
  | "opens-later";

/**
 * The guest's port as the agent sees it: a session is a stream the agent's server serves until it
 * ends; 50 ms later (guest/serve-port.ts) the next one opens. Bytes from the host while no session is
 * open wait (QEMU reads nothing from its chardev then); bytes that reach a session that is ending are
 * discarded (virtio_console discards a port's buffers when it is closed). Every session after the
 * first is opened with the host connected, so it lasts.
 */
class ScriptedPort {
  readonly discarded: Buffer[] = [];
  /** Response bytes written by each session, by session number (1, 2, ...). */
  readonly written = new Map<number, number>();
  readonly #listener: net.Server;
  readonly #server: TtrpcServer;
  readonly #first: FirstSession;
  #host: net.Socket | undefined;
  #session: { n: number; stream: Duplex; chunks: number; ending: boolean } | undefined;
  #waiting: Buffer[] = [];
  #sessions = 0;
  #stopped = false;

  private constructor(listener: net.Server, server: TtrpcServer, first: FirstSession) {
    this.#listener = listener;
    this.#server = server;
    this.#first = first;
    listener.on("connection", (host) => {
      this.#host = host;
      host.on("data", (chunk: Buffer) => {
        this.#fromHost(chunk);
      });
      host.on("error", () => {});
      if (first !== "opens-later") this.#open();
    });
  }

  static async listen(
    socketPath: string,
    server: TtrpcServer,
    first: FirstSession,
    openAfterMs = 0,
  ): Promise<ScriptedPort> {
    const listener = net.createServer();
    await new Promise<void>((resolve) => listener.listen(socketPath, resolve));
    const port = new ScriptedPort(listener, server, first);
    if (first === "opens-later")
      setTimeout(() => {
        port.#open();
      }, openAfterMs);
    return port;
  }

  #open(): void {
    if (this.#stopped) return;
    const n = ++this.#sessions;
    const stream: Duplex = new Duplex({
      read() {},
      write: (chunk: Buffer, _enc, done) => {
        this.written.set(n, (this.written.get(n) ?? 0) + chunk.length);
        if (this.#session?.stream === stream) this.#host?.write(chunk);
        done();
      },
    });
    const session = { n, stream, chunks: 0, ending: false };
    this.#session = session;
    void this.#server.serve(stream).then(async () => {
      this.#session = undefined;
      await delay(50);
      this.#open();
    });
    for (const chunk of this.#waiting.splice(0)) this.#fromHost(chunk);
  }

  #fromHost(chunk: Buffer): void {
    const s = this.#session;
    if (s === undefined) {
      this.#waiting.push(chunk);
      return;
    }
    if (s.ending) {
      this.discarded.push(chunk);
      return;
    }
    const doomed = s.n === 1 && this.#first !== "opens-later";
    if (doomed && (this.#first === "ends-at-once" || s.chunks > 0)) {
      s.ending = true;
      this.discarded.push(chunk);
      s.stream.push(null);
      return;
    }
    s.chunks++;
    s.stream.push(chunk);
  }

  async close(): Promise<void> {
    this.#stopped = true;
    this.#session?.stream.destroy();
    this.#host?.destroy();
    await new Promise((resolve) => this.#listener.close(resolve));
  }
}

let dir: string;
let port: ScriptedPort | undefined;
let client: AgentClient | undefined;
/** The port session each ReseedRandomDev was handled on. */
let reseededOn: number[];

/** Health.Check calls a hostile agent answered, each naming a session never named before. */
let hostileAnswers = 0;

async function start(
  first: FirstSession,
  opts: { openAfterMs?: number; namesSessions?: boolean | "a new one every time" } = {},
) {
  const server = new TtrpcServer({ newClientOnStreamOne: true });
  if (opts.namesSessions === false) {
    server.register(Health, { check: () => Promise.resolve({ status: HealthCheckResponse_ServingStatus.SERVING }) });
  } else if (opts.namesSessions === "a new one every time") {
    server.register(Health, {
      check: () => Promise.resolve({ status: HealthCheckResponse_ServingStatus.SERVING, session: ++hostileAnswers }),
    });
  } else {
    registerHealth(server, "test");
  }
  server.register(AgentService, {
    reseedRandomDev: (_req, ctx) => {
      reseededOn.push(ctx.connection);
      return Promise.resolve({});
    },
  });
  const socketPath = path.join(dir, "agent.sock");
  port = await ScriptedPort.listen(socketPath, server, first, opts.openAfterMs);
  const signal = AbortSignal.timeout(5000);
  client = await AgentClient.connect(socketPath, { signal });
  return { port, client, signal };
}

describe("agent readiness over a scripted virtio-serial port (no VM)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "kata-ts-port-sessions-"));
    reseededOn = [];
  });
  afterEach(async () => {
    await client?.close();
    await port?.close();
    client = undefined;
    port = undefined;
    // Nothing of the test is left but its directory's socket, removed with it.
    assert.deepEqual(await readdir(dir), []);
    await rm(dir, { recursive: true });
  });

  it("an answer from a session that then ends is not readiness: the request after it is answered", async () => {
    const { port, client, signal } = await start("answers-then-ends");

    await client.waitReady(signal, { probeIntervalMs: runningAgentProbeIntervalMs });
    await client.agent.reseedRandomDev({ data: new Uint8Array(8) }, { signal: AbortSignal.timeout(2000) });

    // The race happened: session 1 answered the first probe, then what came next was discarded.
    assert.ok((port.written.get(1) ?? 0) > 0, "session 1 answered");
    assert.ok(port.discarded.length > 0, "bytes sent to the ending session were discarded");
    assert.deepEqual(reseededOn, [2]);
  });

  it("a probe lost with its session is followed at the fast pace, not 2 s later", async () => {
    const { port, client, signal } = await start("ends-at-once");

    const started = Date.now();
    await client.waitReady(signal, { probeIntervalMs: runningAgentProbeIntervalMs });
    const tookMs = Date.now() - started;
    await client.agent.reseedRandomDev({ data: new Uint8Array(8) }, { signal: AbortSignal.timeout(2000) });

    assert.equal(port.written.get(1), undefined, "session 1 answered nothing");
    assert.equal(port.discarded.length, 1);
    assert.ok(tookMs < 1000, `ready after ${tookMs} ms`);
    assert.deepEqual(reseededOn, [2]);
  });

  it("probes piled up before the port opens (a boot) are answered by one session, then one more", async () => {
    const { port, client, signal } = await start("opens-later", { openAfterMs: 350 });

    await client.waitReady(signal, { probeIntervalMs: runningAgentProbeIntervalMs });
    await client.agent.reseedRandomDev({ data: new Uint8Array(8) }, { signal: AbortSignal.timeout(2000) });

    assert.deepEqual([...port.written.keys()], [1]);
    assert.equal(port.discarded.length, 0);
    assert.deepEqual(reseededOn, [1]);
  });

  it("an agent that does not name its session is ready at its first answer (older guest images)", async () => {
    const { port, client, signal } = await start("opens-later", { namesSessions: false });

    await client.waitReady(signal);
    await client.agent.reseedRandomDev({ data: new Uint8Array(8) }, { signal: AbortSignal.timeout(2000) });

    assert.deepEqual(reseededOn, [1]);
    assert.equal(port.discarded.length, 0);
  });

  it("an agent naming a new session in every answer is never ready, and gets a bounded number of probes", async () => {
    hostileAnswers = 0;
    const { client } = await start("opens-later", { namesSessions: "a new one every time" });

    await assert.rejects(
      client.waitReady(AbortSignal.timeout(1500), { probeIntervalMs: runningAgentProbeIntervalMs }),
      (e: unknown) => isKataError(e, Code.DeadlineExceeded),
    );

    // 64 confirming probes at most, plus the first and one every 100 ms.
    assert.ok(hostileAnswers > 64 && hostileAnswers <= 64 + 1 + 20, `${hostileAnswers} probes answered`);
  });
});
