// Dialling a unix socket another process listens on (QEMU's QMP and agent sockets, a sandbox service): one
// attempt, or retries with backoff while the listener is not up yet; always bounded by an AbortSignal.

import { connect, type Socket } from "node:net";
import { abortError, delay } from "../base/async.js";
import { Code, KataError, errnoOf, isKataError } from "../base/errors.js";

/** sun_path is 108 bytes including the terminating NUL; the kernel, QEMU and Node refuse longer paths. */
export const maxUnixPathBytes = 107;

/** Errnos of a listener that is not ready yet: socket not created, not listening, or its accept queue full. */
export const notReadyErrnos: readonly string[] = ["ENOENT", "ECONNREFUSED", "EAGAIN"];

/** Errnos that mean nobody listens on the path (as opposed to a listener we may not or cannot reach). */
const notListeningErrnos: readonly string[] = ["ENOENT", "ECONNREFUSED"];

export interface DialOptions {
  /** Aborting gives up: a half-open socket is destroyed and the dial rejects CANCELLED or DEADLINE_EXCEEDED. */
  readonly signal: AbortSignal;
  /** What the dial is for, put before the path in errors: "qmp connect" -> "qmp connect /run/x/qmp.sock: ...". */
  readonly op: string;
  /** Errnos retried (with backoff) until `signal` aborts, e.g. notReadyErrnos; none by default. */
  readonly retryWhile?: readonly string[];
  /** Wait before the first retry, doubled each time up to max. */
  readonly backoffMs?: { readonly first: number; readonly max: number };
  /** Called with the failed attempt's error before each retry, for debug logs. */
  readonly onRetry?: (err: unknown, attempt: number) => void;
}

const defaultBackoffMs = { first: 5, max: 100 } as const;

/**
 * A connected socket on `path`. Throws UNAVAILABLE "<op> <path>: not listening" when nobody listens there
 * (ENOENT, ECONNREFUSED), INTERNAL for any other connect error, CANCELLED/DEADLINE_EXCEEDED when `signal`
 * aborts first; the failed attempt's errno error is the cause.
 */
export async function dialUnix(path: string, opts: DialOptions): Promise<Socket> {
  const op = `${opts.op} ${path}`;
  const { signal } = opts;
  const backoff = opts.backoffMs ?? defaultBackoffMs;
  let waitMs = backoff.first;
  let lastError: unknown;
  for (let attempt = 1; ; attempt++) {
    try {
      return await connectOnce(path, signal, op);
    } catch (e) {
      if (isKataError(e)) throw withCause(e, lastError);
      if (!(opts.retryWhile ?? []).includes(errnoOf(e) ?? "")) throw connectError(e, op);
      lastError = e;
    }
    opts.onRetry?.(lastError, attempt);
    // delay() rejects only when signal aborts; the error then names the dial, not the wait.
    await delay(waitMs, signal).catch((e: unknown) => {
      throw withCause(abortError(signal, op), lastError ?? e);
    });
    waitMs = Math.min(waitMs * 2, backoff.max);
  }
}

// Only "nobody listens" is UNAVAILABLE: callers read it as "that service is gone" (delete --force cleans up
// after it), which EACCES or a full accept queue does not prove.
function connectError(e: unknown, op: string): KataError {
  if (notListeningErrnos.includes(errnoOf(e) ?? "")) {
    return new KataError(Code.Unavailable, `${op}: not listening`, { cause: e });
  }
  return new KataError(Code.Internal, op, { cause: e });
}

/** `e` with the last connect error as its cause ("timed out" alone would not say what was tried). */
function withCause(e: KataError, cause: unknown): KataError {
  return cause === undefined || e.cause !== undefined ? e : new KataError(e.code, e.message, { cause });
}

/** One attempt; rejects with the socket's errno error, or a KataError when `signal` aborts first. */
function connectOnce(path: string, signal: AbortSignal, op: string): Promise<Socket> {
  if (signal.aborted) return Promise.reject(abortError(signal, op));
  return new Promise<Socket>((resolve, reject) => {
    const socket = connect(path);
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
