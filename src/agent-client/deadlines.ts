// Deadlines on every call into the guest. A guest that stops answering (QEMU stopped, agent frozen) must
// make each host operation fail within a bound, never hang it: every AgentService RPC gets a default
// deadline unless it waits on a process or streams its data, and every call ends at once when the
// sandbox is known to be gone (`life` aborted).

import { linkSignals } from "../base/async.js";
import { Code, isKataError } from "../base/errors.js";
import type { CallOptions } from "../protocol/ttrpc/client.js";
import type { AgentApi } from "./agent-client.js";

export interface AgentDeadlines {
  /** Default deadline of one RPC, in ms ([agent.kata] request_timeout_ms). */
  readonly requestMs: number;
  /** CreateContainer's deadline, in ms ([runtime] create_container_timeout, seconds in TOML). */
  readonly createContainerMs: number;
  /**
   * How long a guest that missed a deadline has to answer a health check before it counts as lost
   * (Kata runtime-rs: health_check_request_timeout_ms).
   */
  readonly healthCheckMs: number;
}

/** Kata's defaults: 30 s per request (runtime-rs request_timeout_ms), 60 s for CreateContainer; 10 s to prove life. */
export const defaultAgentDeadlines: AgentDeadlines = {
  requestMs: 30_000,
  createContainerMs: 60_000,
  healthCheckMs: 10_000,
};

/**
 * RPCs with no default deadline: WaitProcess lasts as long as the process, and the stdio calls block
 * until there is data or room. They end with `life`, or with the caller's own signal. Everything else,
 * the network calls (UpdateInterface, UpdateRoutes, AddARPNeighbors, List*) included, is bounded.
 */
export const unboundedRpcs: ReadonlySet<string> = new Set([
  "waitProcess",
  "readStdout",
  "readStderr",
  "writeStdin",
  "getOOMEvent",
]);

export interface BoundedAgentOptions {
  readonly deadlines: AgentDeadlines;
  /** Aborts (with a KataError reason) when the sandbox is gone: pending and later calls fail with it. */
  readonly life: AbortSignal;
  /** Told of every call that ran out of time, so the owner can check whether the guest still answers. */
  readonly onDeadline?: (method: string) => void;
}

function deadlineOf(method: string, d: AgentDeadlines): number | undefined {
  if (unboundedRpcs.has(method)) return undefined;
  return method === "createContainer" ? d.createContainerMs : d.requestMs;
}

/**
 * The same client with deadlines: a call's own `timeoutMs` wins, else the method's default applies;
 * the call's signal is linked with `life`.
 */
export function boundedAgent(raw: AgentApi, opts: BoundedAgentOptions): AgentApi {
  const out: Record<string, unknown> = {};
  for (const [method, fn] of Object.entries(raw)) {
    // CAST: createClient builds one function per method, each taking (request, CallOptions).
    const call = fn as (req: unknown, o?: CallOptions) => Promise<unknown>;
    out[method] = async (req: unknown, o: CallOptions = {}) => {
      const timeoutMs = o.timeoutMs ?? deadlineOf(method, opts.deadlines);
      const linked = linkSignals(o.signal, opts.life);
      try {
        return await call(req, {
          ...o,
          signal: linked.signal,
          ...(timeoutMs === undefined ? {} : { timeoutMs }),
        });
      } catch (e) {
        if (isKataError(e, Code.DeadlineExceeded)) opts.onDeadline?.(method);
        throw e;
      } finally {
        linked.clear();
      }
    };
  }
  // CAST: one wrapper per method of `raw`, with the same signature.
  return out as AgentApi;
}
