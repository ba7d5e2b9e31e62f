// Deadlines on the CLI's calls into a sandbox's service. The service bounds its own calls into the guest;
// these bound the service itself (a stopped or wedged service must not hang the CLI), and turn a missed
// deadline into an error that names the sandbox and what to do about it.

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

/**
 * The task client with a deadline on each call (its own timeoutMs wins), and errors that say which
 * sandbox did not answer and how to remove it.
 */
export function boundedTask(raw: TaskApi, sandboxId: string, d: ServiceDeadlines): TaskApi {
  const out: Record<string, unknown> = {};
  for (const [method, fn] of Object.entries(raw)) {
    // CAST: createClient builds one function per method, each taking (request, CallOptions).
    const call = fn as (req: unknown, o?: CallOptions) => Promise<unknown>;
    const ms = unbounded.has(method) ? undefined : method === "create" ? d.createMs : d.callMs;
    out[method] = async (req: unknown, o: CallOptions = {}) => {
      const timeoutMs = o.timeoutMs ?? ms;
      try {
        return await call(req, timeoutMs === undefined ? o : { ...o, timeoutMs });
      } catch (e) {
        throw explain(e, sandboxId, method);
      }
    };
  }
  // CAST: one wrapper per method of `raw`, with the same signature.
  return out as TaskApi;
}

/**
 * A deadline missed by the service or by its guest, or a service or guest gone: the error says which
 * sandbox, and how to remove it if it stays that way. The cause (kept) says which call ran out.
 */
function explain(e: unknown, sandboxId: string, method: string): unknown {
  const hint = `if the sandbox is wedged, \`kata-ts delete --force ${sandboxId}\` removes it`;
  if (isKataError(e, Code.DeadlineExceeded)) {
    return new KataError(Code.DeadlineExceeded, `${method} on sandbox ${sandboxId} ran out of time; ${hint}`, {
      cause: e,
    });
  }
  if (isKataError(e, Code.Unavailable)) {
    return new KataError(Code.Unavailable, `${method} on sandbox ${sandboxId} failed; ${hint}`, { cause: e });
  }
  return e;
}
