// A QMP client over QEMU's `-qmp unix:...,server=on,wait=off` socket: greeting, capabilities negotiation,
// commands answered in order, asynchronous events. QEMU is treated as untrusted-ish: every line has a size
// limit and any protocol violation closes the client. The typed commands live in commands.ts.
// Protocol: https://www.qemu.org/docs/master/interop/qmp-spec.html

import type { Socket } from "node:net";
import { deferred, raceAbort, type Deferred } from "../../../base/async.js";
import { Code, KataError, isKataError, messageOf } from "../../../base/errors.js";
import { nullLogger, type Logger } from "../../../base/log.js";
import { dialUnix, notReadyErrnos } from "../../../platform/unix-socket.js";
import { LineDecoder, defaultMaxLineBytes } from "./line-decoder.js";

export interface QmpEvent {
  readonly event: string;
  readonly data: unknown;
  /** QEMU sends `{ seconds, microseconds }`. */
  readonly timestamp?: unknown;
}

/** QMP error classes that are obviously not internal failures; everything else is INTERNAL. */
const errorClassCodes: Readonly<Record<string, Code>> = {
  CommandNotFound: Code.Unimplemented,
  DeviceNotFound: Code.NotFound,
  DeviceNotActive: Code.FailedPrecondition,
  KVMMissingCap: Code.Unimplemented,
};

interface Pending {
  readonly command: string;
  readonly reply: Deferred<unknown>;
}

type EventListener = (e: QmpEvent) => void;

/** A JSON object, as every QMP message and most `return` values are. */
export function isRecord(v: unknown): v is Readonly<Record<string, unknown>> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export class QmpClient {
  /** Resolves (never rejects) once the connection is closed, for any reason. */
  readonly closed: Promise<void>;
  readonly #socket: Socket;
  readonly #logger: Logger;
  readonly #decoder: LineDecoder;
  readonly #greeting = deferred<Readonly<Record<string, unknown>>>();
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Set<EventListener>();
  readonly #closeListeners = new Set<() => void>();
  #nextId = 1;
  #isClosed = false;
  /** Why the connection closed (protocol error, socket error); the cause of UNAVAILABLE rejections. */
  #closeCause: unknown;

  private constructor(socket: Socket, logger: Logger, maxLineBytes: number) {
    this.#socket = socket;
    this.#logger = logger;
    this.#decoder = new LineDecoder(maxLineBytes);
    const closed = deferred<undefined>();
    this.closed = closed.promise;
    // connect() reports a missing greeting; this handler covers the case where it gave up (aborted) before.
    this.#greeting.promise.catch((e: unknown) => {
      logger.debug("qmp greeting not received", { err: messageOf(e) });
    });
    socket.on("data", (chunk: Buffer) => {
      this.#onData(chunk);
    });
    socket.on("error", (e) => {
      this.#closeCause ??= e;
    });
    socket.on("close", () => {
      this.#onClose();
      closed.resolve(undefined);
    });
  }

  /**
   * Connects to QEMU's QMP socket, retrying while QEMU has not created it yet (ENOENT/ECONNREFUSED), then reads
   * the greeting and negotiates capabilities. Throws CANCELLED/DEADLINE_EXCEEDED when `signal` aborts first,
   * UNAVAILABLE when the connection closes before that, otherwise what dialUnix throws.
   */
  static async connect(
    socketPath: string,
    opts: { signal: AbortSignal; logger?: Logger; maxLineBytes?: number },
  ): Promise<QmpClient> {
    const logger = opts.logger ?? nullLogger;
    const op = `qmp connect ${socketPath}`;
    const socket = await dialUnix(socketPath, {
      signal: opts.signal,
      op: "qmp connect",
      retryWhile: notReadyErrnos,
      onRetry: (err, attempt) => {
        logger.debug("qmp connect retry", { op, err: messageOf(err), attempt });
      },
    });
    const client = new QmpClient(socket, logger, opts.maxLineBytes ?? defaultMaxLineBytes);
    try {
      await raceAbort(client.#greeting.promise, opts.signal, "greeting");
      await client.execute("qmp_capabilities", undefined, { signal: opts.signal });
    } catch (e) {
      await client[Symbol.asyncDispose]();
      throw new KataError(isKataError(e) ? e.code : Code.Unavailable, op, { cause: e });
    }
    return client;
  }

  /**
   * Sends one command and resolves with its `return` value (unchecked: `T` is the caller's claim about QEMU's
   * schema). A QMP error becomes a KataError `qmp <command>: <desc>`; a closed connection UNAVAILABLE.
   * An aborted `signal` rejects the call; the command itself is still executed by QEMU.
   */
  execute<T = unknown>(command: string, args?: object, opts: { signal?: AbortSignal | undefined } = {}): Promise<T> {
    if (this.#isClosed) {
      return Promise.reject(
        new KataError(Code.Unavailable, `qmp ${command}: connection closed`, { cause: this.#closeCause }),
      );
    }
    const id = this.#nextId++;
    const reply = deferred<unknown>();
    this.#pending.set(id, { command, reply });
    this.#socket.write(
      JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id }) + "\n",
    );
    // CAST: QMP return values are typed by QEMU's schema, which the caller names through T.
    return raceAbort(reply.promise, opts.signal, `qmp ${command}`) as Promise<T>;
  }

  /** Calls `listener` for every event until the returned function is called. */
  onEvent(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * The next event named `name` (and matching `predicate`) that arrives after this call: subscribe before sending
   * the command that causes it. Rejects UNAVAILABLE when the connection closes first.
   */
  waitEvent(name: string, predicate?: (e: QmpEvent) => boolean, signal?: AbortSignal): Promise<QmpEvent> {
    const op = `qmp wait event ${name}`;
    if (this.#isClosed) {
      return Promise.reject(new KataError(Code.Unavailable, `${op}: connection closed`, { cause: this.#closeCause }));
    }
    const found = deferred<QmpEvent>();
    const off = this.onEvent((e) => {
      if (e.event === name && (predicate === undefined || predicate(e))) found.resolve(e);
    });
    const onClose = (): void => {
      found.reject(new KataError(Code.Unavailable, `${op}: connection closed`, { cause: this.#closeCause }));
    };
    this.#closeListeners.add(onClose);
    return raceAbort(found.promise, signal, op).finally(() => {
      off();
      this.#closeListeners.delete(onClose);
    });
  }

  /** True once the connection is closed (or closing after a protocol error): commands then fail at once. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Closes the connection (idempotent); pending commands reject with UNAVAILABLE. Await `closed` to know it is. */
  close(): void {
    this.#socket.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.closed;
  }

  #onData(chunk: Buffer): void {
    let lines: string[];
    try {
      lines = this.#decoder.push(chunk);
    } catch (e) {
      this.#protocolError(e);
      return;
    }
    for (const line of lines) {
      if (this.#isClosed || line.trim() === "") continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch (e) {
        this.#protocolError(new KataError(Code.Internal, "qmp: protocol error: invalid JSON line", { cause: e }));
        return;
      }
      this.#onMessage(msg);
    }
  }

  #onMessage(msg: unknown): void {
    if (!isRecord(msg)) {
      this.#protocolError(new KataError(Code.Internal, "qmp: protocol error: message is not an object"));
    } else if ("QMP" in msg) {
      this.#greeting.resolve(msg);
    } else if (typeof msg["event"] === "string") {
      const e: QmpEvent = { event: msg["event"], data: msg["data"], timestamp: msg["timestamp"] };
      for (const listener of [...this.#listeners]) {
        try {
          listener(e);
        } catch (err) {
          // A listener's bug must not tear down the connection every other caller shares.
          this.#logger.error("qmp event listener failed", { event: e.event, err: messageOf(err) });
        }
      }
    } else if ("return" in msg || "error" in msg) {
      this.#onReply(msg);
    } else {
      this.#protocolError(new KataError(Code.Internal, "qmp: protocol error: unknown message"));
    }
  }

  #onReply(msg: Readonly<Record<string, unknown>>): void {
    // Replies come in order; QEMU echoes our `id`, which catches a desynchronised stream.
    const head = this.#pending.entries().next();
    if (head.done === true || (msg["id"] !== undefined && msg["id"] !== head.value[0])) {
      this.#protocolError(
        new KataError(Code.Internal, `qmp: protocol error: unexpected reply id ${String(msg["id"])}`),
      );
      return;
    }
    const [id, first] = head.value;
    this.#pending.delete(id);
    const err = msg["error"];
    if (err === undefined) {
      first.reply.resolve(msg["return"]);
      return;
    }
    const cls = isRecord(err) && typeof err["class"] === "string" ? err["class"] : "unknown";
    const desc = isRecord(err) && typeof err["desc"] === "string" ? err["desc"] : JSON.stringify(err);
    first.reply.reject(
      new KataError(errorClassCodes[cls] ?? Code.Internal, `qmp ${first.command}: ${desc}`, {
        details: { qmpClass: cls },
      }),
    );
  }

  #protocolError(e: unknown): void {
    this.#logger.warn("qmp protocol error, closing", { err: messageOf(e) });
    this.#closeCause = e;
    this.#isClosed = true;
    this.#socket.destroy();
  }

  #onClose(): void {
    this.#isClosed = true;
    const cause = this.#closeCause;
    this.#greeting.reject(new KataError(Code.Unavailable, "qmp: connection closed before the greeting", { cause }));
    for (const { command, reply } of this.#pending.values()) {
      reply.reject(new KataError(Code.Unavailable, `qmp ${command}: connection closed`, { cause }));
    }
    this.#pending.clear();
    for (const onClose of [...this.#closeListeners]) onClose();
  }
}
