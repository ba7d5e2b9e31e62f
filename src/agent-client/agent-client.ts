// The host's typed client of the guest agent, over the hypervisor's agent socket (the host end of the
// virtio-serial port). Readiness is "Health.Check answered", nothing weaker.

import net from "node:net";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { abortError, delay } from "../base/async.js";
import { Code, KataError, errnoOf, isKataError } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import { nullLogger } from "../base/log.js";
import { AgentService } from "../protocol/gen/agent_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../protocol/gen/health_pb.js";
import { TtrpcConnection, createClient, type TtrpcClient } from "../protocol/ttrpc/client.js";

type MethodsOf<T> = T extends GenService<infer S> ? S : never;
export type AgentApi = TtrpcClient<MethodsOf<typeof AgentService>>;
export type HealthApi = TtrpcClient<MethodsOf<typeof Health>>;

/** How long one health probe waits before another is sent (a guest still booting never answers it). */
const probeIntervalMs = 2000;

function connectSocket(socketPath: string, signal: AbortSignal): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(socketPath);
    const onAbort = (): void => {
      s.destroy();
      reject(abortError(signal, `connect ${socketPath}`));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    s.once("connect", () => {
      signal.removeEventListener("abort", onAbort);
      resolve(s);
    });
    s.once("error", (e) => {
      signal.removeEventListener("abort", onAbort);
      reject(e);
    });
  });
}

export class AgentClient {
  readonly agent: AgentApi;
  readonly health: HealthApi;
  readonly closed: Promise<void>;
  readonly #conn: TtrpcConnection;

  private constructor(conn: TtrpcConnection) {
    this.#conn = conn;
    this.agent = createClient(AgentService, conn);
    this.health = createClient(Health, conn);
    this.closed = conn.closed;
  }

  /** Connects to the agent socket, retrying while the hypervisor has not created it yet. */
  static async connect(socketPath: string, opts: { signal: AbortSignal; logger?: Logger }): Promise<AgentClient> {
    for (;;) {
      try {
        const socket = await connectSocket(socketPath, opts.signal);
        return new AgentClient(new TtrpcConnection(socket, { logger: opts.logger ?? nullLogger }));
      } catch (e) {
        if (isKataError(e)) throw e;
        const errno = errnoOf(e);
        if (errno !== "ENOENT" && errno !== "ECONNREFUSED") {
          throw new KataError(Code.Unavailable, `connect agent socket ${socketPath}`, { cause: e });
        }
        await delay(20, opts.signal);
      }
    }
  }

  /**
   * Resolves once the agent answers Health.Check SERVING. A probe sent before the guest opened its
   * port waits in the channel and is answered late; a lost one is replaced every probeIntervalMs.
   */
  async waitReady(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const r = await this.health.check({}, { signal, timeoutMs: probeIntervalMs });
        if (r.status === HealthCheckResponse_ServingStatus.SERVING) return;
        await delay(100, signal);
      } catch (e) {
        // A probe that timed out is replaced; the loop condition decides whether time is up.
        if (!isKataError(e, Code.DeadlineExceeded) && !isKataError(e, Code.Cancelled)) throw e;
      }
    }
    throw abortError(signal, "wait for the agent");
  }

  close(): Promise<void> {
    return this.#conn.close();
  }
}
