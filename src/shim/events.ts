// Publishes task events to containerd (containerd.services.events.ttrpc.v1.Events/Forward on the socket
// containerd gives the shim as TTRPC_ADDRESS). containerd learns that a task exited only from these events,
// so they are queued in order and retried; but the task API must never wait for containerd's event
// service: publish() only enqueues, and one sender loop does the talking.

import net from "node:net";
import type { Duplex } from "node:stream";
import { create, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { AnySchema, timestampFromDate, type Any } from "@bufbuild/protobuf/wkt";
import { delay, settlesWithin } from "../base/async.js";
import { Code, KataError } from "../base/errors.js";
import { errField, type Logger } from "../base/log.js";
import { Events, EnvelopeSchema } from "../protocol/gen/containerd/api/services/ttrpc/events/v1/events_pb.js";
import { TtrpcConnection, createClient } from "../protocol/ttrpc/client.js";

/** containerd's topics for task events (runtime/events.go). */
export const topics = {
  create: "/tasks/create",
  start: "/tasks/start",
  exit: "/tasks/exit",
  delete: "/tasks/delete",
  execAdded: "/tasks/exec-added",
  execStarted: "/tasks/exec-started",
  paused: "/tasks/paused",
  resumed: "/tasks/resumed",
  oom: "/tasks/oom",
} as const;

export interface EventPublisher {
  /** Queues an event; never blocks, never throws (a full queue or a bad message is logged and dropped). */
  publish<D extends DescMessage>(topic: string, schema: D, message: MessageInitShape<D>): void;
  /** Sends what is queued within a short deadline, then stops; later publishes are dropped. */
  close(): Promise<void>;
}

export interface EventPublisherOptions {
  /** containerd's ttRPC socket: a path or unix://path. */
  readonly ttrpcAddress: string;
  readonly namespace: string;
  readonly logger: Logger;
  /** Opens a connection to `path` (default: a unix socket). */
  readonly dial?: (path: string) => Promise<Duplex>;
  /** Events held while containerd does not take them (default 1024). */
  readonly maxQueued?: number;
  /** Tries per event before it is dropped (default 5). */
  readonly maxAttempts?: number;
  /** First wait between tries, doubled each time up to 2 s (default 100 ms). */
  readonly retryDelayMs?: number;
  /** Deadline of one Forward call (default 5 s). */
  readonly callTimeoutMs?: number;
  /** How long close() waits for the queue to drain (default 2 s). */
  readonly drainMs?: number;
}

interface Queued {
  readonly topic: string;
  readonly at: Date;
  readonly event: Any;
}

/**
 * The type URL containerd's typeurl gives a gogo-registered message: its full protobuf name, no
 * "type.googleapis.com/" prefix (typeurl v1 falls back to proto.MessageName), e.g. containerd.events.TaskExit.
 */
export function eventAny<D extends DescMessage>(schema: D, message: MessageInitShape<D>): Any {
  return create(AnySchema, { typeUrl: schema.typeName, value: toBinary(schema, create(schema, message)) });
}

/** A path from containerd's address, which may carry the unix:// scheme. */
export function socketPathOf(address: string): string {
  const p = address.startsWith("unix://") ? address.slice("unix://".length) : address;
  if (p === "") throw new KataError(Code.InvalidArgument, `ttrpc address: empty`);
  return p;
}

function dialUnix(path: string): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    s.once("connect", () => {
      s.removeListener("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

export function createEventPublisher(opts: EventPublisherOptions): EventPublisher {
  return new Publisher(opts);
}

class Publisher implements EventPublisher {
  readonly #path: string;
  readonly #namespace: string;
  readonly #log: Logger;
  readonly #dial: (path: string) => Promise<Duplex>;
  readonly #maxQueued: number;
  readonly #maxAttempts: number;
  readonly #retryDelayMs: number;
  readonly #callTimeoutMs: number;
  readonly #drainMs: number;
  readonly #queue: Queued[] = [];
  /** Aborted when close() gives up draining: the loop's waits and call end. */
  readonly #stop = new AbortController();
  #conn: TtrpcConnection | undefined;
  #loop: Promise<void> | undefined;
  #closing = false;

  constructor(opts: EventPublisherOptions) {
    this.#path = socketPathOf(opts.ttrpcAddress);
    this.#namespace = opts.namespace;
    this.#log = opts.logger.child({ component: "events" });
    this.#dial = opts.dial ?? dialUnix;
    this.#maxQueued = opts.maxQueued ?? 1024;
    this.#maxAttempts = opts.maxAttempts ?? 5;
    this.#retryDelayMs = opts.retryDelayMs ?? 100;
    this.#callTimeoutMs = opts.callTimeoutMs ?? 5000;
    this.#drainMs = opts.drainMs ?? 2000;
  }

  publish<D extends DescMessage>(topic: string, schema: D, message: MessageInitShape<D>): void {
    if (this.#closing) {
      this.#log.warn("event dropped: the publisher is closed", { topic });
      return;
    }
    if (this.#queue.length >= this.#maxQueued) {
      this.#log.warn("event dropped: the queue is full (containerd does not take events)", {
        topic,
        queued: this.#queue.length,
      });
      return;
    }
    let event: Any;
    try {
      event = eventAny(schema, message);
    } catch (e) {
      // A message we built wrongly is our bug; it must still not fail the task call that published it.
      this.#log.error("event dropped: cannot encode it", { topic, err: errField(e) });
      return;
    }
    this.#queue.push({ topic, at: new Date(), event });
    this.#loop ??= this.#run().finally(() => {
      this.#loop = undefined;
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    const loop = this.#loop;
    if (loop !== undefined) {
      if (!(await settlesWithin(loop, this.#drainMs))) {
        this.#stop.abort(new KataError(Code.Cancelled, "event publisher closed"));
        await loop;
      }
    }
    if (this.#queue.length > 0) {
      this.#log.warn("events dropped at close: containerd did not take them in time", {
        topics: this.#queue.map((q) => q.topic),
      });
      this.#queue.length = 0;
    }
    await this.#conn?.close();
    this.#conn = undefined;
  }

  /** Sends the queue's head until the queue is empty; each event is retried, then dropped. */
  async #run(): Promise<void> {
    const stop = this.#stop.signal;
    // A function, so the checks after each await read the signal anew.
    const stopped = (): boolean => stop.aborted;
    let attempts = 0;
    for (let head = this.#queue[0]; head !== undefined && !stopped(); head = this.#queue[0]) {
      try {
        await this.#send(head);
        this.#queue.shift();
        attempts = 0;
        continue;
      } catch (e) {
        if (stopped()) return;
        attempts++;
        // The connection may be the cause (containerd restarted): dial again for the next try.
        const conn = this.#conn;
        this.#conn = undefined;
        await conn?.close();
        if (attempts >= this.#maxAttempts) {
          this.#log.warn("event dropped: containerd did not take it", {
            topic: head.topic,
            attempts,
            err: errField(e),
          });
          this.#queue.shift();
          attempts = 0;
          continue;
        }
        this.#log.debug("forward event failed; retrying", { topic: head.topic, attempts, err: errField(e) });
        const wait = Math.min(this.#retryDelayMs * 2 ** (attempts - 1), 2000);
        try {
          await delay(wait, stop);
        } catch (d) {
          if (stopped()) return;
          throw d;
        }
      }
    }
  }

  async #send(q: Queued): Promise<void> {
    this.#conn ??= new TtrpcConnection(await this.#dial(this.#path), { logger: this.#log });
    const events = createClient(Events, this.#conn);
    await events.forward(
      {
        envelope: create(EnvelopeSchema, {
          timestamp: timestampFromDate(q.at),
          namespace: this.#namespace,
          topic: q.topic,
          event: q.event,
        }),
      },
      { timeoutMs: this.#callTimeoutMs, signal: this.#stop.signal },
    );
  }
}
