// Small async helpers that Node 20 lacks (Promise.withResolvers) or that every layer needs.

import { setMaxListeners } from "node:events";
import { Code, KataError } from "./errors.js";

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (r: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The error an aborted signal stands for, as a KataError (CANCELLED or DEADLINE_EXCEEDED). */
export function abortError(signal: AbortSignal, op: string): KataError {
  const reason: unknown = signal.reason;
  if (reason instanceof KataError) return reason;
  const timedOut = reason instanceof Error && reason.name === "TimeoutError";
  return new KataError(
    timedOut ? Code.DeadlineExceeded : Code.Cancelled,
    `${op}: ${timedOut ? "timed out" : "cancelled"}`,
  );
}

/** Races `p` against `signal`; the loser is not cancelled, only abandoned. */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined, op: string): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) return Promise.reject(abortError(signal, op));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(abortError(signal, op));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** Sleeps `ms` (keeping the process alive meanwhile), rejecting early when `signal` aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return Promise.reject(abortError(signal, "delay"));
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      // CAST: onAbort is only registered on a defined signal.
      reject(abortError(signal as AbortSignal, "delay"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A signal that aborts when `parent` does or after `ms` (reason: a TimeoutError). Use this instead of
 * AbortSignal.any([..., AbortSignal.timeout(ms)]): on Node 20 such composite signals can be garbage
 * collected together with their timer, and the deadline then never fires. Call clear() when done.
 */
export function deadline(ms: number, ...parents: (AbortSignal | undefined)[]): { signal: AbortSignal; clear(): void } {
  const timeout = new AbortController();
  const timer = setTimeout(() => {
    timeout.abort(new DOMException(`timed out after ${ms} ms`, "TimeoutError"));
  }, ms);
  const linked = linkSignals(...parents, timeout.signal);
  return {
    signal: linked.signal,
    clear() {
      clearTimeout(timer);
      linked.clear();
    },
  };
}

/** Whether `p` settles within `ms` (the timer does not keep the process alive; `p`'s rejection is its own). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((r) => {
    timer = setTimeout(() => {
      r(false);
    }, ms);
    timer.unref();
  });
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A signal that aborts when any of `parents` does, with that parent's reason (AbortSignal.any without
 * its Node 20 garbage-collection hazard, see deadline()). Call clear() when done to unlink it.
 */
export function linkSignals(...parents: (AbortSignal | undefined)[]): { signal: AbortSignal; clear(): void } {
  const ctl = new AbortController();
  const unlinks: (() => void)[] = [];
  for (const p of parents) {
    if (p === undefined) continue;
    if (p.aborted) {
      ctl.abort(p.reason);
      break;
    }
    const onAbort = (): void => {
      ctl.abort(p.reason);
    };
    p.addEventListener("abort", onAbort, { once: true });
    unlinks.push(() => {
      p.removeEventListener("abort", onAbort);
    });
  }
  return {
    signal: ctl.signal,
    clear() {
      for (const u of unlinks) u();
    },
  };
}

/**
 * An AbortController whose signal may have any number of listeners: a long-lived signal (a sandbox's
 * life) is linked into every call made during that life, and Node warns past 10 listeners otherwise.
 */
export function longLivedController(): AbortController {
  const ctl = new AbortController();
  setMaxListeners(0, ctl.signal);
  return ctl;
}

/**
 * Runs `steps` at once, each with a signal that aborts when `signal` does or another step fails; waits
 * for all of them to settle (nothing is left running behind the caller's cleanup) and throws the first
 * failure, the ones it caused not hiding it.
 */
export async function concurrently(
  steps: readonly ((signal: AbortSignal) => Promise<unknown>)[],
  signal: AbortSignal,
): Promise<void> {
  const failed = new AbortController();
  const linked = linkSignals(signal, failed.signal);
  let first: { readonly error: unknown } | undefined;
  try {
    await Promise.all(
      steps.map((step) =>
        step(linked.signal).catch((e: unknown) => {
          if (first === undefined) {
            first = { error: e };
            failed.abort(e);
          }
        }),
      ),
    );
  } finally {
    linked.clear();
  }
  if (first !== undefined) throw first.error;
}
