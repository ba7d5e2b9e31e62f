// A QMP client over QEMU's `-qmp unix:...,server=on,wait=off` socket: greeting, capabilities negotiation,
// commands answered in order, asynchronous events. QEMU is treated as untrusted-ish: every line has a size
// limit and any protocol violation closes the client. Protocol: https://www.qemu.org/docs/master/interop/qmp-spec.html

import { connect as netConnect, type Socket } from "node:net";
import { abortError, deferred, delay, raceAbort, type Deferred } from "../../base/async.js";
import { Code, KataError, errnoOf, isKataError, messageOf } from "../../base/errors.js";
import { nullLogger, type Logger } from "../../base/log.js";

export interface QmpEvent {
  readonly event: string;
  readonly data: unknown;
  /** QEMU sends `{ seconds, microseconds }`. */
  readonly timestamp?: unknown;
}

export interface QmpStatus {
  /** "running", "paused", "inmigrate", "postmigrate", "shutdown"... */
  readonly status: string;
  readonly running: boolean;
}

export interface QmpMigrationInfo {
  /** Absent until a migration starts (QEMU 7.2 answers `{}`), then "setup", "active", "completed", "failed"... */
  readonly status?: string;
  readonly [key: string]: unknown;
}

/** A JSON line longer than this closes the client. QEMU's largest answers (query-qmp-schema) are ~200 KB. */
export const defaultMaxLineBytes = 1024 * 1024;

/** Errnos that mean "QEMU has not created or started listening on the socket yet". */
const retryableConnectErrnos = new Set(["ENOENT", "ECONNREFUSED", "EAGAIN"]);
const connectBackoffMs = { first: 5, max: 100 } as const;
const migrationPollMs = 10;

/** QMP error classes that are obviously not internal failures; everything else is INTERNAL. */
const errorClassCodes: Readonly<Record<string, Code>> = {
  CommandNotFound: Code.Unimplemented,
  DeviceNotFound: Code.NotFound,
  DeviceNotActive: Code.FailedPrecondition,
  KVMMissingCap: Code.Unimplemented,
};

/** Splits a byte stream into lines, refusing (throwing) once a line exceeds maxLineBytes. */
export class LineDecoder {
  readonly #maxLineBytes: number;
  #parts: Buffer[] = [];
  #size = 0;

  constructor(maxLineBytes: number) {
    this.#maxLineBytes = maxLineBytes;
  }

  /** The complete lines in `chunk` (without "\n" or "\r\n"); throws INTERNAL on an oversize line. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let rest = chunk;
    for (let nl = rest.indexOf(0x0a); nl >= 0; nl = rest.indexOf(0x0a)) {
      this.#take(rest.subarray(0, nl));
      let line = Buffer.concat(this.#parts, this.#size);
      if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
      if (line.length > this.#maxLineBytes) this.#tooLong();
      lines.push(line.toString("utf8"));
      this.#parts = [];
      this.#size = 0;
      rest = rest.subarray(nl + 1);
    }
    this.#take(rest);
    return lines;
  }

  #take(bytes: Buffer): void {
    // Checked before buffering, so a peer that never sends "\n" costs at most maxLineBytes. One byte more is
    // allowed only while it is the "\r" of QEMU's "\r\n".
    const size = this.#size + bytes.length;
    const last = bytes.length > 0 ? bytes.at(-1) : this.#parts.at(-1)?.at(-1);
    if (size > this.#maxLineBytes + 1 || (size === this.#maxLineBytes + 1 && last !== 0x0d)) this.#tooLong();
    if (bytes.length > 0) this.#parts.push(bytes);
    this.#size += bytes.length;
  }

  #tooLong(): never {
    throw new KataError(Code.Internal, `qmp: protocol error: line longer than ${this.#maxLineBytes} bytes`);
  }
}

interface Pending {
  readonly command: string;
  readonly reply: Deferred<unknown>;
}

type EventListener = (e: QmpEvent) => void;

function isRecord(v: unknown): v is Readonly<Record<string, unknown>> {
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
   * UNAVAILABLE when the connection fails otherwise.
   */
  static async connect(
    socketPath: string,
    opts: { signal: AbortSignal; logger?: Logger; maxLineBytes?: number },
  ): Promise<QmpClient> {
    const logger = opts.logger ?? nullLogger;
    const op = `qmp connect ${socketPath}`;
    const socket = await connectWithRetry(socketPath, opts.signal, logger, op);
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

  /** Closes the connection (idempotent); pending commands reject with UNAVAILABLE. Await `closed` to know it is. */
  close(): void {
    this.#socket.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.closed;
  }

  /** Asks QEMU to exit. QEMU may close the socket before answering, which counts as success. */
  async quit(signal?: AbortSignal): Promise<void> {
    // Checked first: once "quit" is in flight, UNAVAILABLE means QEMU is exiting, not that we never asked.
    if (this.#isClosed) {
      throw new KataError(Code.Unavailable, "qmp quit: connection closed", { cause: this.#closeCause });
    }
    try {
      await this.execute("quit", undefined, { signal });
    } catch (e) {
      if (!isKataError(e, Code.Unavailable)) throw e;
    }
  }

  async stop(signal?: AbortSignal): Promise<void> {
    await this.execute("stop", undefined, { signal });
  }

  async cont(signal?: AbortSignal): Promise<void> {
    await this.execute("cont", undefined, { signal });
  }

  async queryStatus(signal?: AbortSignal): Promise<QmpStatus> {
    const r = await this.execute("query-status", undefined, { signal });
    if (!isRecord(r) || typeof r["status"] !== "string" || typeof r["running"] !== "boolean") {
      throw new KataError(Code.Internal, "qmp query-status: unexpected answer", {
        details: { answer: JSON.stringify(r) },
      });
    }
    return { status: r["status"], running: r["running"] };
  }

  /** Starts an outgoing migration. QEMU 7.2 has no `file:` URI: save with `exec:cat > FILE`. */
  async migrate(uri: string, signal?: AbortSignal): Promise<void> {
    await this.execute("migrate", { uri }, { signal });
  }

  /** Starts an incoming migration on a VM started with `-incoming defer`, e.g. `exec:cat FILE`. */
  async migrateIncoming(uri: string, signal?: AbortSignal): Promise<void> {
    await this.execute("migrate-incoming", { uri }, { signal });
  }

  /** `{ "x-ignore-shared": true }`: set on both sides, before migrate / migrate-incoming. */
  async setMigrationCapabilities(caps: Readonly<Record<string, boolean>>, signal?: AbortSignal): Promise<void> {
    const capabilities = Object.entries(caps).map(([capability, state]) => ({ capability, state }));
    await this.execute("migrate-set-capabilities", { capabilities }, { signal });
  }

  /** Polls query-migrate until `completed` (returned) or `failed`/`cancelled` (INTERNAL with QEMU's error-desc). */
  async waitMigration(signal: AbortSignal): Promise<QmpMigrationInfo> {
    for (;;) {
      const info = await this.execute("query-migrate", undefined, { signal });
      if (!isRecord(info)) throw new KataError(Code.Internal, "qmp query-migrate: unexpected answer");
      const status = info["status"];
      if (status === "completed") return { ...info, status };
      if (status === "failed" || status === "cancelled") {
        const desc = typeof info["error-desc"] === "string" ? `: ${info["error-desc"]}` : "";
        throw new KataError(Code.Internal, `qmp migrate: ${status}${desc}`);
      }
      await delay(migrationPollMs, signal).catch(() => {
        throw abortError(signal, "qmp wait migration");
      });
    }
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

/** Connects, retrying while the socket is missing or not listening yet, until `signal` aborts. */
async function connectWithRetry(path: string, signal: AbortSignal, logger: Logger, op: string): Promise<Socket> {
  let waitMs: number = connectBackoffMs.first;
  for (let attempt = 1; ; attempt++) {
    let lastError: unknown;
    try {
      return await openSocket(path, signal, op);
    } catch (e) {
      if (isKataError(e)) throw e;
      if (!retryableConnectErrnos.has(errnoOf(e) ?? "")) throw new KataError(Code.Unavailable, op, { cause: e });
      lastError = e;
    }
    logger.debug("qmp connect retry", { op, err: messageOf(lastError), attempt });
    try {
      await delay(waitMs, signal);
    } catch (e) {
      // "qmp connect /run/x/qmp.sock: timed out: connect ENOENT /run/x/qmp.sock"
      const aborted = abortError(signal, op);
      throw new KataError(isKataError(e) ? e.code : aborted.code, aborted.message, { cause: lastError });
    }
    waitMs = Math.min(waitMs * 2, connectBackoffMs.max);
  }
}

/** One connection attempt; rejects with the socket's errno error, or CANCELLED/DEADLINE_EXCEEDED on abort. */
function openSocket(path: string, signal: AbortSignal, op: string): Promise<Socket> {
  if (signal.aborted) return Promise.reject(abortError(signal, op));
  return new Promise<Socket>((resolve, reject) => {
    const socket = netConnect(path);
    const onAbort = (): void => {
      socket.destroy();
      reject(abortError(signal, op));
    };
    const onError = (e: Error): void => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(e);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("error", onError);
    socket.once("connect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.off("error", onError);
      resolve(socket);
    });
  });
}
