// A stand-in for containerd's event service (containerd.services.events.ttrpc.v1.Events) on a real unix
// socket, served by our TtrpcServer: it records every envelope forwarded to it, decoded.

import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { deferred } from "../../src/base/async.js";
import { Events, type Envelope } from "../../src/protocol/gen/containerd/api/services/ttrpc/events/v1/events_pb.js";
import { TtrpcServer } from "../../src/protocol/ttrpc/server.js";

export interface ReceivedEvent {
  readonly topic: string;
  readonly namespace: string;
  readonly typeUrl: string;
  readonly envelope: Envelope;
}

export class FakeEventsServer {
  readonly socketPath: string;
  readonly received: ReceivedEvent[] = [];
  /** "answer" takes events; "hang" never answers a Forward; "fail" answers UNAVAILABLE. */
  mode: "answer" | "hang" | "fail" = "answer";
  readonly #dir: string;
  #listener: net.Server | undefined;
  readonly #sockets = new Set<net.Socket>();
  #waiters: { n: number; resolve: () => void }[] = [];

  private constructor(dir: string) {
    this.#dir = dir;
    this.socketPath = path.join(dir, "events.sock");
  }

  /** A server in a fresh temp directory; not listening until start(). */
  static async create(): Promise<FakeEventsServer> {
    return new FakeEventsServer(await mkdtemp(path.join(os.tmpdir(), "kata-ts-events-")));
  }

  async start(): Promise<void> {
    const server = new TtrpcServer();
    server.register(Events, {
      forward: async (req, ctx) => {
        if (this.mode === "hang") {
          const never = deferred<undefined>();
          ctx.signal.addEventListener(
            "abort",
            () => {
              never.resolve(undefined);
            },
            { once: true },
          );
          await never.promise;
          return {};
        }
        if (this.mode === "fail") throw new Error("fake events service: unavailable");
        const env = req.envelope;
        if (env === undefined) throw new Error("fake events service: no envelope");
        this.received.push({
          topic: env.topic,
          namespace: env.namespace,
          typeUrl: env.event?.typeUrl ?? "",
          envelope: env,
        });
        this.#waiters = this.#waiters.filter((w) => {
          if (this.received.length < w.n) return true;
          w.resolve();
          return false;
        });
        return {};
      },
    });
    const listener = net.createServer((s) => {
      this.#sockets.add(s);
      s.once("close", () => this.#sockets.delete(s));
      void server.serve(s);
    });
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(this.socketPath, resolve);
    });
    this.#listener = listener;
  }

  /** Stops listening and drops the connections (containerd going away). */
  async stop(): Promise<void> {
    const l = this.#listener;
    this.#listener = undefined;
    if (l === undefined) return;
    const closed = new Promise<void>((r) => {
      l.close(() => {
        r();
      });
    });
    for (const s of this.#sockets) s.destroy();
    await closed;
    await rm(this.socketPath, { force: true });
  }

  /** Resolves once `n` events have arrived. */
  waitFor(n: number): Promise<void> {
    if (this.received.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  topics(): string[] {
    return this.received.map((e) => e.topic);
  }

  /** The payload of event `i`, decoded as `schema` (throws if its type URL is not the schema's name). */
  decode<D extends DescMessage>(i: number, schema: D): MessageShape<D> {
    const ev = this.received[i]?.envelope.event;
    if (ev?.typeUrl !== schema.typeName) throw new Error(`event ${i}: type ${ev?.typeUrl}, not ${schema.typeName}`);
    return fromBinary(schema, ev.value);
  }

  async dispose(): Promise<void> {
    await this.stop();
    await rm(this.#dir, { recursive: true, force: true });
  }
}
