// Deadlines on the CLI's calls into a sandbox's service. The service bounds its own calls into the guest;
// these bound the service itself (a stopped or wedged service must not hang the CLI), and turn a missed
// deadline into an error that names the sandbox and what to do about it.

import { deadline } from "../base/async.js";
import { Code, KataError, isKataError } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import { errField } from "../base/log.js";
import type { RuntimeConfig } from "../config/types.js";
import { defaultConfig } from "../config/defaults.js";
import type { CallOptions } from "../protocol/ttrpc/client.js";
import type { TaskApi } from "./service-client.js";

export interface ServiceDeadlines {
  /** Create: the VM's boot and the container's creation in it, plus hooks. */
  readonly createMs: number;
  /** Every other call but Wait. */
  readonly callMs: number;
}

/** Room for the service's own teardown steps and its reply, beyond its guest call's deadline. */
const serviceMarginMs = 30_000;

export function serviceDeadlines(cfg: RuntimeConfig): ServiceDeadlines {
  return {
    createMs: cfg.agent.dialTimeoutMs + cfg.runtime.createContainerTimeoutMs + 2 * serviceMarginMs,
    callMs: Math.max(60_000, cfg.agent.requestTimeoutMs + serviceMarginMs),
  };
}

/** Deadlines from the configuration; its defaults when it cannot be loaded (delete must still work). */
export async function loadServiceDeadlines(
  config: () => Promise<{ config: RuntimeConfig }>,
  log: Logger,
): Promise<ServiceDeadlines> {
  try {
    return serviceDeadlines((await config()).config);
  } catch (e) {
    log.warn("configuration not loaded: default deadlines for calls on the service", { err: errField(e) });
    return serviceDeadlines(defaultConfig);
  }
}

/** Methods that wait for a process, as long as it runs. */
const unbounded: ReadonlySet<string> = new Set(["wait"]);

/** Sent to the service as the request's own deadline: later than ours, so our timer fires first. */
const wireGraceMs = 1000;

/**
 * The task client with a deadline on each call (its own timeoutMs wins). When our deadline fires, the
 * service is gone, or the service says its guest did not answer (or is lost), the error says which sandbox
 * and how to remove it; other errors pass as they are.
 */
export function boundedTask(raw: TaskApi, sandboxId: string, d: ServiceDeadlines, closed: () => boolean): TaskApi {
  const out: Record<string, unknown> = {};
  for (const [method, fn] of Object.entries(raw)) {
    // CAST: createClient builds one function per method, each taking (request, CallOptions).
    const call = fn as (req: unknown, o?: CallOptions) => Promise<unknown>;
    const ms = unbounded.has(method) ? undefined : method === "create" ? d.createMs : d.callMs;
    out[method] = async (req: unknown, o: CallOptions = {}) => {
      const timeoutMs = o.timeoutMs ?? ms;
      if (timeoutMs === undefined) return call(req, o);
      const ours = deadline(timeoutMs, o.signal);
      try {
        return await call(req, { ...o, signal: ours.signal, timeoutMs: timeoutMs + wireGraceMs });
      } catch (e) {
        if (ours.signal.aborted && o.signal?.aborted !== true) {
          const within = `its service did not answer within ${Math.round(timeoutMs / 1000)} s`;
          throw notAnswered(e, sandboxId, method, within);
        }
        if (isKataError(e, Code.Unavailable) && closed())
          throw notAnswered(e, sandboxId, method, "its service is gone");
        // The guest did not answer the service, or is lost. A failed create cleaned up after itself.
        const wedged = isKataError(e, Code.DeadlineExceeded) || isKataError(e, Code.Unavailable);
        if (wedged && method !== "create") throw notAnswered(e, sandboxId, method, "failed");
        throw e;
      } finally {
        ours.clear();
      }
    };
  }
  // CAST: one wrapper per method of `raw`, with the same signature.
  return out as TaskApi;
}

function notAnswered(e: unknown, sandboxId: string, method: string, what: string): KataError {
  // A create given up on is undone by the service itself (our connection closing cancels it).
  const hint =
    method === "create"
      ? "the create is cancelled and undone"
      : `if it stays so, \`kata-ts delete --force ${sandboxId}\` removes the sandbox`;
  const code = isKataError(e, Code.Unavailable) ? Code.Unavailable : Code.DeadlineExceeded;
  return new KataError(code, `${method} on sandbox ${sandboxId}: ${what}; ${hint}`, { cause: e });
}
