// The host's typed client of the guest agent, over the hypervisor's agent socket (the host end of the
// virtio-serial port). Readiness is "Health.Check answered", nothing weaker.

import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { abortError, deferred } from "../base/async.js";
import { Code, isKataError } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import { nullLogger } from "../base/log.js";
import { dialUnix, notReadyErrnos } from "../platform/unix-socket.js";
import { AgentService } from "../protocol/gen/agent_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../protocol/gen/health_pb.js";
import { TtrpcConnection, createClient, type TtrpcClient } from "../protocol/ttrpc/client.js";

type MethodsOf<T> = T extends GenService<infer S> ? S : never;
export type AgentApi = TtrpcClient<MethodsOf<typeof AgentService>>;
export type HealthApi = TtrpcClient<MethodsOf<typeof Health>>;

/**
 * How long one health probe waits before another is sent. A booting guest reads none until its agent
 * opens the port, then all at once, so a faster pace only piles up probes; a VM whose agent was already
 * running (template, cache) loses a probe to a port session the agent ends, and is probed faster.
 */
const probeIntervalMs = 2000;
/** The pace for a VM whose agent was running before the host connected (vm from the factory). */
export const runningAgentProbeIntervalMs = 100;
/** Sessions whose first answer gets a confirming probe; a real agent has a few during readiness. */
const maxConfirmedSessions = 64;
/** The socket appears when the hypervisor creates its chardev, some milliseconds after it starts. */
const connectBackoffMs = { first: 5, max: 20 } as const;

export class AgentClient {
  readonly agent: AgentApi;
  readonly health: HealthApi;
  readonly closed: Promise<void>;
  readonly #conn: TtrpcConnection;
  readonly #log: Logger;

  private constructor(conn: TtrpcConnection, log: Logger) {
    this.#conn = conn;
    this.#log = log;
    this.agent = createClient(AgentService, conn);
    this.health = createClient(Health, conn);
    this.closed = conn.closed;
  }

  /**
   * Connects to the agent socket, retrying while the hypervisor has not created it yet. Throws
   * CANCELLED/DEADLINE_EXCEEDED when `signal` aborts first, UNAVAILABLE when the socket cannot be reached.
   */
  static async connect(socketPath: string, opts: { signal: AbortSignal; logger?: Logger }): Promise<AgentClient> {
    const socket = await dialUnix(socketPath, {
      signal: opts.signal,
      op: "connect agent socket",
      retryWhile: notReadyErrnos,
      backoffMs: connectBackoffMs,
    });
    const log = opts.logger ?? nullLogger;
    return new AgentClient(new TtrpcConnection(socket, { logger: log }), log);
  }

  /**
   * Resolves once the agent answers Health.Check SERVING from a port session that lasts. Probes sent
   * before the guest opened its port wait in the channel and are answered late (all at once, by an agent
   * whose code is still cold), so none is abandoned: another is added every `probeIntervalMs` (default
   * 2 s) in case one was lost.
   *
   * One answer is not enough: the agent reopens its virtio-serial port while no host is connected
   * (guest/serve-port.ts), and a session it opened before the guest learnt that a host connected ends at
   * its first read, after answering what that read held; the guest then discards whatever the host sent
   * it meanwhile (a VM from the template or the cache, whose agent was waiting for a host: our next
   * request would be lost). Such a session reads once, so a session that answers a probe sent after the
   * host had its first answer has read twice, saw the host connected, and stays until the host leaves
   * (docs/factory.md#the-agents-port-sessions). That second probe goes out at once. An agent that does
   * not name its session (0) is taken at its first answer, as before.
   *
   * The probes do not watch `signal` themselves (a slow boot would pile a listener per probe onto it);
   * when it aborts, waiting stops, and the caller closes the connection, which ends them.
   */
  async waitReady(signal: AbortSignal, opts: { readonly probeIntervalMs?: number } = {}): Promise<void> {
    const ready = deferred<undefined>();
    let failure: unknown;
    /** Probes sent so far; each probe knows its own number. */
    let sent = 0;
    /** Session → how many probes had been sent when its first answer came. */
    const firstAnswer = new Map<number, number>();
    const started = Date.now();
    let firstAnswerMs: number | undefined;
    /** Answers that come after this (probes piled up in the channel) send no more probes. */
    let settled = false;
    const probe = (): void => {
      const n = ++sent;
      this.health.check({}).then(
        (r) => {
          if (r.status !== HealthCheckResponse_ServingStatus.SERVING) return;
          firstAnswerMs ??= Date.now() - started;
          if (r.session === 0) {
            ready.resolve(undefined);
            return;
          }
          const after = firstAnswer.get(r.session);
          if (after === undefined) {
            // A guest naming a new session in every answer gets no more confirming probes past this.
            if (firstAnswer.size >= maxConfirmedSessions || settled) return;
            firstAnswer.set(r.session, sent);
            probe();
          } else if (n > after) {
            ready.resolve(undefined);
          }
        },
        (e: unknown) => {
          if (!isKataError(e, Code.DeadlineExceeded) && !isKataError(e, Code.Cancelled)) {
            failure ??= e;
            ready.resolve(undefined);
          }
        },
      );
    };
    const onAbort = (): void => {
      ready.resolve(undefined);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    probe();
    const timer = setInterval(probe, opts.probeIntervalMs ?? probeIntervalMs);
    try {
      await ready.promise;
    } finally {
      settled = true;
      clearInterval(timer);
      signal.removeEventListener("abort", onAbort);
    }
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- a probe's own error, rethrown as is
    if (failure !== undefined) throw failure;
    if (signal.aborted) throw abortError(signal, "wait for the agent");
    // Where readiness time went: a lost probe shows as sessions > 1 or many probes.
    this.#log.debug("agent ready", {
      probes: sent,
      sessions: firstAnswer.size,
      firstAnswerMs,
      readyMs: Date.now() - started,
    });
  }

  close(): Promise<void> {
    return this.#conn.close();
  }
}
