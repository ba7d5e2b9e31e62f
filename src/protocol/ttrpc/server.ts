// ttRPC server: unary handlers for protobuf-es services, each request handled concurrently, over
// any Duplex (https://github.com/containerd/ttrpc/blob/main/PROTOCOL.md). Stream-id rules follow
// containerd's Go server: client ids must be odd and increasing; a violation answers that stream
// with INVALID_ARGUMENT and the connection goes on.

import type { Duplex } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, DescMethod, Message, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { deferred, longLivedController } from "../../base/async.js";
import { Code, KataError, codeOf, messageOf } from "../../base/errors.js";
import { errField, nullLogger } from "../../base/log.js";
import type { Logger } from "../../base/log.js";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/request_pb.js";
import type { Request } from "../gen/ttrpc/request_pb.js";
import { FrameDecoder, FrameType, defaultMaxFrameBytes, encodeFrame } from "./frame.js";
import type { Frame } from "./frame.js";
import { toWireStatus } from "./status.js";
import type { WireStatus } from "./status.js";

export interface CallContext {
  /** Aborts at the request's deadline (timeout_nano) and when the connection closes. */
  readonly signal: AbortSignal;
  /** Request metadata; a key the client repeated has several values, in order. */
  readonly metadata: ReadonlyMap<string, string[]>;
  /** Which serve() call of this server the request came on: 1, 2, ... in the order they started. */
  readonly connection: number;
}

export type Handler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => Promise<MessageInitShape<O>>;

/** Handlers of a service, keyed as protobuf-es names its methods (camelCase). */
export type ServiceImpl<S extends GenServiceMethods> = {
  [K in keyof S]: Handler<S[K]["input"], S[K]["output"]>;
};

export interface TtrpcServerOptions {
  /** Largest frame accepted or sent (default 4 MiB, the protocol maximum). */
  readonly maxFrameBytes?: number;
  readonly logger?: Logger;
  /**
   * For byte streams without connection boundaries (a virtio-serial port): a request with stream id 1
   * on a connection that already used higher ids is a new client (the host reconnected without the
   * guest seeing it), not a protocol error. Responses to the old client's requests are still sent and
   * ignored by the new one.
   */
  readonly newClientOnStreamOne?: boolean;
  /** Requests one connection may have in its handlers at once (default maxInFlightRequests). */
  readonly maxInFlightRequests?: number;
}

interface Route {
  readonly method: DescMethod;
  call(request: Message, ctx: CallContext): Promise<unknown>;
}

/** Longest deadline a timer can hold; a request asking for more simply gets this much. */
const maxTimerMs = 2 ** 31 - 1;

/**
 * Requests of one connection whose handlers are still running. A client flooding requests gets
 * RESOURCE_EXHAUSTED for each one beyond it, instead of one handler (and its memory) per request.
 * Not lower: the host keeps three calls waiting in the agent for every live process (WaitProcess and
 * the long-polling ReadStdout and ReadStderr), so this leaves room for some 340 processes in a pod.
 */
export const maxInFlightRequests = 1024;

/**
 * Responses queued for a client that does not read them. Past this the connection stops reading
 * requests until the queue drains, so a client cannot make us queue answers without bound.
 */
export const maxQueuedResponseBytes = 1 << 20;

export class TtrpcServer {
  readonly #maxFrameBytes: number;
  readonly #newClientOnStreamOne: boolean;
  readonly #maxInFlight: number;
  readonly #log: Logger;
  /** "grpc.AgentService/CreateContainer" → handler. */
  readonly #routes = new Map<string, Route>();
  readonly #services = new Set<string>();
  /** Handlers running on any connection, and who waits for there to be none. */
  readonly #busy = { count: 0, waiters: [] as (() => void)[] };
  #connections = 0;

  constructor(opts: TtrpcServerOptions = {}) {
    this.#maxFrameBytes = opts.maxFrameBytes ?? defaultMaxFrameBytes;
    this.#newClientOnStreamOne = opts.newClientOnStreamOne === true;
    this.#maxInFlight = opts.maxInFlightRequests ?? maxInFlightRequests;
    this.#log = (opts.logger ?? nullLogger).child({ component: "ttrpc-server" });
  }

  /**
   * Serves `impl` for `service`; methods without a handler answer UNIMPLEMENTED.
   * Throws ALREADY_EXISTS when the service was registered before.
   */
  register<S extends GenServiceMethods>(service: GenService<S>, impl: Partial<ServiceImpl<S>>): void {
    if (this.#services.has(service.typeName)) {
      throw new KataError(Code.AlreadyExists, `register ttrpc service ${service.typeName}: already registered`);
    }
    this.#services.add(service.typeName);
    // CAST: a Partial<ServiceImpl<S>> is a record of optional handlers keyed by method localName.
    const handlers = impl as Readonly<Record<string, Handler<DescMessage, DescMessage> | undefined>>;
    for (const method of service.methods) {
      const handler = handlers[method.localName];
      if (handler === undefined || method.methodKind !== "unary") continue;
      this.#routes.set(`${service.typeName}/${method.name}`, {
        method,
        // `call` keeps `impl` as `this`, so class instances work as implementations.
        call: (request, ctx) => handler.call(impl, request, ctx),
      });
    }
  }

  /**
   * Serves one connection until it ends, then resolves; it never rejects. Peer misbehaviour (bad
   * frames, oversize lengths) is logged and closes the connection. Handlers still running when the
   * connection closes see `ctx.signal` abort; their results are dropped.
   */
  serve(stream: Duplex): Promise<void> {
    return new ServerConnection(stream, this.#routes, {
      maxFrameBytes: this.#maxFrameBytes,
      log: this.#log,
      newClientOnStreamOne: this.#newClientOnStreamOne,
      maxInFlight: this.#maxInFlight,
      busy: this.#busy,
      connection: ++this.#connections,
    }).done;
  }

  /**
   * Resolves once no handler runs on any connection (their responses written). A service that ends
   * itself from inside a handler (a sandbox's Delete) waits for this, so that call is still answered.
   */
  idle(): Promise<void> {
    if (this.#busy.count === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#busy.waiters.push(resolve);
    });
  }
}

interface ConnectionLimits {
  readonly maxFrameBytes: number;
  readonly log: Logger;
  readonly newClientOnStreamOne: boolean;
  readonly maxInFlight: number;
  readonly busy: { count: number; waiters: (() => void)[] };
  readonly connection: number;
}

class ServerConnection {
  readonly done: Promise<void>;
  readonly #stream: Duplex;
  readonly #routes: ReadonlyMap<string, Route>;
  readonly #maxFrameBytes: number;
  readonly #log: Logger;
  readonly #decoder: FrameDecoder;
  readonly #closed = longLivedController();
  readonly #done = deferred<undefined>();
  #lastStreamId = 0;
  readonly #newClientOnStreamOne: boolean;
  readonly #maxInFlight: number;
  #inFlight = 0;
  readonly #busy: ConnectionLimits["busy"];
  readonly #connection: number;
  /** Reading is paused until the client reads the responses queued for it. */
  #waitingForDrain = false;

  constructor(stream: Duplex, routes: ReadonlyMap<string, Route>, limits: ConnectionLimits) {
    this.#newClientOnStreamOne = limits.newClientOnStreamOne;
    this.#maxInFlight = limits.maxInFlight;
    this.#busy = limits.busy;
    this.#connection = limits.connection;
    this.#stream = stream;
    this.#routes = routes;
    this.#maxFrameBytes = limits.maxFrameBytes;
    this.#log = limits.log;
    this.#decoder = new FrameDecoder({ maxFrameBytes: limits.maxFrameBytes });
    this.done = this.#done.promise;

    stream.on("data", (chunk: Buffer) => {
      this.#onData(chunk);
    });
    // Like containerd's server: end of input means the client went away; in-flight work is cancelled.
    stream.on("end", () => {
      this.#shutdown("peer closed the connection");
    });
    stream.on("close", () => {
      this.#shutdown("stream closed");
    });
    stream.on("error", (e: Error) => {
      this.#log.debug("ttrpc: stream error", { err: errField(e) });
      this.#shutdown("stream failed");
    });
    if (stream.destroyed) this.#shutdown("stream already destroyed");
  }

  #onData(chunk: Buffer): void {
    try {
      this.#decoder.push(chunk, (frame) => {
        this.#onFrame(frame);
      });
    } catch (e) {
      this.#log.warn("ttrpc: bad frame from client, closing the connection", { err: errField(e) });
      this.#shutdown("protocol error");
    }
  }

  #onFrame(frame: Frame): void {
    const id = frame.streamId;
    if (frame.type === FrameType.Response) {
      this.#log.warn("ttrpc: ignoring a response frame from the client", { streamId: id });
      return;
    }
    if (frame.type === FrameType.Data) {
      this.#respondStatus(id, invalid(`ttrpc stream ${id}: data frames are not supported (unary calls only)`));
      return;
    }
    if (id % 2 !== 1) {
      this.#respondStatus(id, invalid(`ttrpc stream id ${id} must be odd for client-initiated streams`));
      return;
    }
    if (id === 1 && this.#lastStreamId > 1 && this.#newClientOnStreamOne) {
      this.#log.info("ttrpc: a new client started over on this stream", { lastStreamId: this.#lastStreamId });
      this.#lastStreamId = 0;
    }
    if (id <= this.#lastStreamId) {
      this.#respondStatus(id, invalid(`ttrpc stream id ${id} must be greater than ${this.#lastStreamId}`));
      return;
    }
    this.#lastStreamId = id;
    let request: Request;
    try {
      request = fromBinary(RequestSchema, frame.payload);
    } catch (e) {
      this.#respondStatus(id, invalid(`ttrpc stream ${id}: decode request: ${messageOf(e)}`));
      return;
    }
    void this.#dispatch(id, request);
  }

  /** Never rejects: every outcome, including a throwing handler, becomes a response. */
  async #dispatch(id: number, request: Request): Promise<void> {
    const op = `${request.service}/${request.method}`;
    const route = this.#routes.get(op);
    if (route === undefined) {
      this.#respondStatus(id, toWireStatus(new KataError(Code.Unimplemented, `${op}: not implemented`)));
      return;
    }
    let input: Message;
    try {
      input = fromBinary(route.method.input, request.payload);
    } catch (e) {
      this.#respondStatus(id, invalid(`${op}: decode request: ${messageOf(e)}`));
      return;
    }
    // Counted from here (synchronously, before the handler's first await) to the handler's end: requests
    // answered at once (unimplemented, undecodable) take no slot.
    if (this.#inFlight >= this.#maxInFlight) {
      const why = `${op}: ${this.#maxInFlight} requests are already in flight on this connection`;
      this.#log.debug("ttrpc: refusing a request over the in-flight limit", { streamId: id, op });
      this.#respondStatus(id, toWireStatus(new KataError(Code.ResourceExhausted, why)));
      return;
    }

    const deadline = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    if (request.timeoutNano > 0n) {
      const ms = Math.min(maxTimerMs, Math.ceil(Number(request.timeoutNano) / 1e6));
      timer = setTimeout(() => {
        deadline.abort(new KataError(Code.DeadlineExceeded, `${op}: deadline of ${ms} ms exceeded`));
      }, ms);
    }
    // One controller per request, held by this frame: a composite AbortSignal.any() may be garbage
    // collected on Node 20 while a handler still waits on it.
    const closed = this.#closed.signal;
    const onClosed = (): void => {
      deadline.abort(closed.reason);
    };
    if (closed.aborted) onClosed();
    else closed.addEventListener("abort", onClosed, { once: true });
    const signal = deadline.signal;
    const metadata = new Map<string, string[]>();
    for (const { key, value } of request.metadata) metadata.set(key, [...(metadata.get(key) ?? []), value]);

    const started = Date.now();
    this.#inFlight++;
    this.#busy.count++;
    try {
      const init = await route.call(input, { signal, metadata, connection: this.#connection });
      let payload: Uint8Array;
      try {
        // CAST: the handler's type (Handler<I, O>) guarantees an init shape of route.method.output.
        payload = toBinary(route.method.output, create(route.method.output, init as MessageInitShape<DescMessage>));
      } catch (e) {
        throw new KataError(Code.Internal, `${op}: encode response: ${messageOf(e)}`);
      }
      this.#respond(id, op, { code: 0, message: "" }, payload);
      // Where a caller's time goes (a slow ExecSync, say), call by call, when debugging.
      this.#log.debug("ttrpc: handled", { op, durationMs: Date.now() - started });
    } catch (e) {
      // Failures are the caller's business (it gets the status); only a bug (INTERNAL) is worth a warning.
      this.#log[codeOf(e) === Code.Internal ? "warn" : "debug"]("ttrpc: handler failed", {
        op,
        durationMs: Date.now() - started,
        err: errField(e),
      });
      this.#respondStatus(id, toWireStatus(e));
    } finally {
      this.#inFlight--;
      clearTimeout(timer);
      closed.removeEventListener("abort", onClosed);
      if (--this.#busy.count === 0) for (const w of this.#busy.waiters.splice(0)) w();
    }
  }

  #respondStatus(id: number, status: WireStatus): void {
    this.#respond(id, "", status, new Uint8Array(0));
  }

  /** Writes one Response frame; an oversize response becomes a RESOURCE_EXHAUSTED status instead. */
  #respond(id: number, op: string, status: WireStatus, payload: Uint8Array): void {
    if (this.#closed.signal.aborted) {
      this.#log.debug("ttrpc: dropping a response, connection closed", { streamId: id, op });
      return;
    }
    const encode = (st: WireStatus, data: Uint8Array): Buffer => {
      const response = create(ResponseSchema, { status: st, payload: data });
      const bytes = toBinary(ResponseSchema, response);
      return encodeFrame({ streamId: id, type: FrameType.Response, flags: 0, payload: bytes }, this.#maxFrameBytes);
    };
    let frame: Buffer;
    try {
      try {
        frame = encode(status, payload);
      } catch (e) {
        if (codeOf(e) !== Code.ResourceExhausted) throw e;
        this.#log.warn("ttrpc: response too large", { streamId: id, op, err: errField(e) });
        const limit = `exceeds the ttrpc frame limit of ${this.#maxFrameBytes} bytes`;
        const tooLarge = new KataError(Code.ResourceExhausted, `${op}: response of ${payload.length} bytes ${limit}`);
        frame = encode(toWireStatus(tooLarge), new Uint8Array(0));
      }
    } catch (e) {
      // Only a bug gets here (ids come from a decoded u32, statuses are small); the call stays unanswered.
      this.#log.error("ttrpc: cannot encode a response", { streamId: id, op, err: errField(e) });
      return;
    }
    // One write per frame: the stream queues whole buffers, so concurrent responses never interleave.
    this.#stream.write(frame, (e) => {
      if (e != null) {
        this.#log.debug("ttrpc: write failed", { err: errField(e) });
        this.#shutdown("write failed");
      }
    });
    if (this.#stream.writableLength > maxQueuedResponseBytes && !this.#waitingForDrain) {
      this.#log.debug("ttrpc: client is not reading its responses, pausing requests", {
        queuedBytes: this.#stream.writableLength,
      });
      this.#waitingForDrain = true;
      this.#stream.pause();
      this.#stream.once("drain", () => {
        this.#waitingForDrain = false;
        this.#stream.resume();
      });
    }
  }

  #shutdown(why: string): void {
    if (this.#closed.signal.aborted) return;
    this.#log.debug("ttrpc: connection closed", { reason: why });
    this.#closed.abort(new KataError(Code.Cancelled, `ttrpc connection closed: ${why}`));
    this.#stream.destroy();
    this.#done.resolve(undefined);
  }
}

function invalid(message: string): WireStatus {
  return toWireStatus(new KataError(Code.InvalidArgument, message));
}
