// ttRPC client: concurrent unary calls over one stream, multiplexed by odd, increasing stream ids
// (https://github.com/containerd/ttrpc/blob/main/PROTOCOL.md), plus a typed client per protobuf-es
// service. Only unary methods exist in the services we speak (agent, health, shim task v2).

import type { Duplex } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { abortError, deferred } from "../../base/async.js";
import { Code, KataError, codeOf, messageOf } from "../../base/errors.js";
import { errField, nullLogger } from "../../base/log.js";
import type { Logger } from "../../base/log.js";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/request_pb.js";
import { FrameDecoder, FrameType, defaultMaxFrameBytes, encodeFrame } from "./frame.js";
import type { Frame } from "./frame.js";
import { fromWireStatus, statusOk } from "./status.js";

export interface CallOptions {
  /** Abandons the call: it rejects with CANCELLED (or DEADLINE_EXCEEDED for a TimeoutError reason). */
  readonly signal?: AbortSignal;
  /** Rejects with DEADLINE_EXCEEDED after this long; also sent to the server as timeout_nano. */
  readonly timeoutMs?: number;
  /** Request metadata (ttrpc KeyValue pairs); an array value sends the key once per element. */
  readonly metadata?: Readonly<Record<string, string | readonly string[]>>;
}

export interface TtrpcConnectionOptions {
  /** Largest frame accepted or sent (default 4 MiB, the protocol maximum). */
  readonly maxFrameBytes?: number;
  readonly logger?: Logger;
}

interface PendingCall {
  readonly op: string;
  settle(result: { ok: true; payload: Uint8Array } | { ok: false; error: KataError }): void;
}

const maxStreamId = 0xffff_ffff;
/** setTimeout fires at once for longer delays (Node clamps them to 1 ms). */
const maxTimerMs = 2 ** 31 - 1;

/**
 * The client end of one ttRPC connection. The connection never reconnects: when the stream ends or
 * fails, every pending and later call rejects with UNAVAILABLE and `closed` resolves.
 */
export class TtrpcConnection {
  /** Resolves (never rejects) once the connection is closed, by either side or by an error. */
  readonly closed: Promise<void>;
  readonly #stream: Duplex;
  readonly #maxFrameBytes: number;
  readonly #log: Logger;
  readonly #decoder: FrameDecoder;
  readonly #pending = new Map<number, PendingCall>();
  readonly #closed = deferred<undefined>();
  #nextStreamId = 1;
  #closeReason: KataError | undefined;

  constructor(stream: Duplex, opts: TtrpcConnectionOptions = {}) {
    this.#stream = stream;
    this.#maxFrameBytes = opts.maxFrameBytes ?? defaultMaxFrameBytes;
    this.#log = (opts.logger ?? nullLogger).child({ component: "ttrpc-client" });
    this.#decoder = new FrameDecoder({ maxFrameBytes: this.#maxFrameBytes });
    this.closed = this.#closed.promise;

    stream.on("data", (chunk: Buffer) => {
      this.#onData(chunk);
    });
    stream.on("end", () => {
      try {
        this.#decoder.end();
      } catch (e) {
        this.#shutdown(
          new KataError(Code.Unavailable, "ttrpc peer closed the connection inside a frame", { cause: e }),
        );
        return;
      }
      this.#shutdown(new KataError(Code.Unavailable, "ttrpc peer closed the connection"));
    });
    stream.on("close", () => {
      this.#shutdown(new KataError(Code.Unavailable, "ttrpc stream closed"));
    });
    stream.on("error", (e: Error) => {
      this.#shutdown(new KataError(Code.Unavailable, "ttrpc stream failed", { cause: e }));
    });
    if (stream.destroyed) this.#shutdown(new KataError(Code.Unavailable, "ttrpc stream already destroyed"));
  }

  /** Whether the connection is closed (by either side, or an error). */
  get isClosed(): boolean {
    return this.#closeReason !== undefined;
  }

  /** Bytes of a frame the server has started but not finished (at most the frame limit plus a header). */
  get bufferedBytes(): number {
    return this.#decoder.bufferedBytes;
  }

  /** Closes the stream; pending calls reject with UNAVAILABLE. Resolves as `closed` does. */
  close(): Promise<void> {
    this.#shutdown(new KataError(Code.Unavailable, "ttrpc connection closed by us"));
    return this.closed;
  }

  /**
   * One unary call with an encoded request; resolves with the encoded response.
   * Rejects with the server's status (see fromWireStatus), UNAVAILABLE when the connection closes
   * first, CANCELLED/DEADLINE_EXCEEDED when abandoned, RESOURCE_EXHAUSTED for an oversize request.
   */
  call(service: string, method: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Uint8Array> {
    const op = `${service}/${method}`;
    if (this.#closeReason !== undefined) return Promise.reject(this.#closedError(op));
    if (opts.signal?.aborted === true) return Promise.reject(abortError(opts.signal, op));
    const timeoutMs = opts.timeoutMs;
    if (timeoutMs !== undefined && !(timeoutMs >= 0 && timeoutMs <= maxTimerMs)) {
      return Promise.reject(
        new KataError(Code.InvalidArgument, `${op}: timeoutMs ${timeoutMs} is not in [0, ${maxTimerMs}]`),
      );
    }
    if (this.#nextStreamId > maxStreamId) {
      return Promise.reject(new KataError(Code.ResourceExhausted, `${op}: ttrpc stream ids exhausted`));
    }

    let frame: Buffer;
    const streamId = this.#nextStreamId;
    try {
      const request = create(RequestSchema, {
        service,
        method,
        payload,
        timeoutNano: timeoutMs === undefined ? 0n : BigInt(Math.ceil(timeoutMs * 1e6)),
        metadata: Object.entries(opts.metadata ?? {}).flatMap(([key, v]) =>
          (typeof v === "string" ? [v] : v).map((value) => ({ key, value })),
        ),
      });
      frame = encodeFrame(
        { streamId, type: FrameType.Request, flags: 0, payload: toBinary(RequestSchema, request) },
        this.#maxFrameBytes,
      );
    } catch (e) {
      return Promise.reject(new KataError(codeOf(e), `${op}: encode request`, { cause: e }));
    }
    this.#nextStreamId += 2;

    const result = deferred<Uint8Array>();
    const cleanup: Array<() => void> = [];
    const settle: PendingCall["settle"] = (r) => {
      if (!this.#pending.delete(streamId)) return;
      for (const undo of cleanup) undo();
      if (r.ok) result.resolve(r.payload);
      else result.reject(r.error);
    };
    this.#pending.set(streamId, { op, settle });

    if (timeoutMs !== undefined) {
      const timer = setTimeout(() => {
        settle({ ok: false, error: new KataError(Code.DeadlineExceeded, `${op}: timed out after ${timeoutMs} ms`) });
      }, timeoutMs);
      cleanup.push(() => {
        clearTimeout(timer);
      });
    }
    const signal = opts.signal;
    if (signal !== undefined) {
      const onAbort = (): void => {
        settle({ ok: false, error: abortError(signal, op) });
      };
      signal.addEventListener("abort", onAbort, { once: true });
      cleanup.push(() => {
        signal.removeEventListener("abort", onAbort);
      });
    }

    this.#stream.write(frame, (e) => {
      if (e != null) this.#shutdown(new KataError(Code.Unavailable, "ttrpc write failed", { cause: e }));
    });
    return result.promise;
  }

  #onData(chunk: Buffer): void {
    try {
      this.#decoder.push(chunk, (frame) => {
        this.#onFrame(frame);
      });
    } catch (e) {
      this.#log.warn("ttrpc: bad frame from server, closing", { err: errField(e) });
      this.#shutdown(new KataError(Code.Unavailable, "ttrpc protocol error", { cause: e }));
    }
  }

  #onFrame(frame: Frame): void {
    if (frame.type !== FrameType.Response) {
      // Server-initiated streams and stream data are not part of unary ttRPC; nothing waits for them.
      this.#log.debug("ttrpc: ignoring non-response frame", { streamId: frame.streamId, type: frame.type });
      return;
    }
    const call = this.#pending.get(frame.streamId);
    if (call === undefined) {
      // Normal after a call was abandoned (timeout, abort): the server answered late.
      this.#log.debug("ttrpc: response for no pending call", { streamId: frame.streamId });
      return;
    }
    let response;
    try {
      response = fromBinary(ResponseSchema, frame.payload);
    } catch (e) {
      call.settle({
        ok: false,
        error: new KataError(Code.Internal, `${call.op}: decode ttrpc response: ${messageOf(e)}`),
      });
      return;
    }
    const status = response.status;
    if (status !== undefined && status.code !== statusOk) {
      call.settle({ ok: false, error: fromWireStatus(status, call.op) });
      return;
    }
    call.settle({ ok: true, payload: response.payload });
  }

  #closedError(op: string): KataError {
    return new KataError(Code.Unavailable, `${op}: connection closed`, { cause: this.#closeReason });
  }

  #shutdown(reason: KataError): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    this.#log.debug("ttrpc: connection closed", { err: errField(reason), pending: this.#pending.size });
    for (const call of [...this.#pending.values()]) {
      call.settle({ ok: false, error: this.#closedError(call.op) });
    }
    this.#stream.destroy();
    this.#closed.resolve(undefined);
  }
}

/** One async method per unary RPC of `S`, named as protobuf-es names it (camelCase). */
export type TtrpcClient<S extends GenServiceMethods> = {
  readonly [K in keyof S]: S[K]["methodKind"] extends "unary"
    ? (request: MessageInitShape<S[K]["input"]>, opts?: CallOptions) => Promise<MessageShape<S[K]["output"]>>
    : never;
};

/**
 * A typed client of `service` over `conn`: `agent.createContainer(req, opts)`. A non-OK status
 * rejects with `fromWireStatus(status, "<service>/<Method>")`, e.g. "grpc.AgentService/CreateContainer".
 */
export function createClient<S extends GenServiceMethods>(
  service: GenService<S>,
  conn: TtrpcConnection,
): TtrpcClient<S> {
  const client: Record<string, unknown> = {};
  for (const method of service.methods) {
    const op = `${service.typeName}/${method.name}`;
    if (method.methodKind !== "unary") {
      client[method.localName] = () =>
        Promise.reject(new KataError(Code.Unimplemented, `${op}: ${method.methodKind} calls are not supported`));
      continue;
    }
    client[method.localName] = async (request: MessageInitShape<DescMessage>, opts?: CallOptions) => {
      let payload: Uint8Array;
      try {
        payload = toBinary(method.input, create(method.input, request));
      } catch (e) {
        throw new KataError(Code.InvalidArgument, `${op}: encode request: ${messageOf(e)}`);
      }
      const reply = await conn.call(service.typeName, method.name, payload, opts);
      try {
        return fromBinary(method.output, reply);
      } catch (e) {
        throw new KataError(Code.Internal, `${op}: decode response: ${messageOf(e)}`);
      }
    };
  }
  // CAST: `client` has one entry per method of `service`, keyed by localName, each with the
  // signature TtrpcClient<S> gives it (unary methods call through, others reject).
  return client as TtrpcClient<S>;
}
