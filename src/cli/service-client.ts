// The CLI's side of the per-sandbox service: start one (as `shim start` would), find the one that holds
// a container (through the ID mapping), and call the containerd task API on it.

import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { deadline, settlesWithin } from "../base/async.js";
import { Code, KataError, isKataError } from "../base/errors.js";
import { dialUnix } from "../platform/unix-socket.js";
import { Task } from "../protocol/gen/containerd/runtime/v2/task/shim_pb.js";
import { TtrpcConnection, createClient, type TtrpcClient } from "../protocol/ttrpc/client.js";
import { StateStore } from "../sandbox/persist.js";
import type { RuntimeContext } from "./runtime-context.js";
import { boundedTask, loadServiceDeadlines, type ServiceDeadlines } from "./task-deadlines.js";

export { serviceListening, startService } from "./service-launch.js";

type MethodsOf<T> = T extends GenService<infer S> ? S : never;
export type TaskApi = TtrpcClient<MethodsOf<typeof Task>>;

export interface TaskConnection {
  readonly task: TaskApi;
  close(): Promise<void>;
  /**
   * Resolves true once the service closed the connection (it does so only by exiting), false after
   * `ms`. A command that ended a sandbox waits for it, so nothing of the sandbox outlives the command.
   */
  serviceGone(ms: number): Promise<boolean>;
}

/** How long a command that ended a sandbox waits for its service to exit. */
export const serviceExitMs = 10_000;

/** Connects to a sandbox's service; with `bound`, every call has a deadline (see task-deadlines.ts). */
export async function connectTask(
  socketPath: string,
  bound?: { sandboxId: string; deadlines: ServiceDeadlines },
): Promise<TaskConnection> {
  // A local service accepts at once or not at all; the deadline only bounds a wedged one.
  const dialTimeoutMs = 5000;
  const dial = deadline(dialTimeoutMs);
  const socket = await dialUnix(socketPath, { signal: dial.signal, op: "connect to the sandbox service at" }).finally(
    () => {
      dial.clear();
    },
  );
  const conn = new TtrpcConnection(socket);
  const task = createClient(Task, conn);
  return {
    task: bound === undefined ? task : boundedTask(task, bound.sandboxId, bound.deadlines, () => conn.isClosed),
    close: () => conn.close(),
    serviceGone: (ms) => settlesWithin(conn.closed, ms),
  };
}

/** The sandbox holding `containerId`; NOT_FOUND when there is none. */
export async function sandboxOf(store: StateStore, containerId: string): Promise<string> {
  const sid = await store.sandboxOf(containerId);
  if (sid === undefined) throw new KataError(Code.NotFound, `container ${containerId} does not exist`);
  return sid;
}

/**
 * Runs `fn` with a task client (every call bounded) of the service holding `containerId`. With
 * `endsSandbox`, `fn` ends the sandbox when `containerId` is the sandbox's own container: the command
 * then returns once the service has exited.
 */
export async function withTask<T>(
  ctx: RuntimeContext,
  containerId: string,
  fn: (task: TaskApi, sandboxId: string) => Promise<T>,
  opts: { endsSandbox?: boolean } = {},
): Promise<T> {
  const store = new StateStore(ctx.flags.root);
  const sid = await sandboxOf(store, containerId);
  const deadlines = await loadServiceDeadlines(() => ctx.config(), ctx.logger);
  const c = await connectTask(store.socketPath(sid), { sandboxId: sid, deadlines }).catch((e: unknown) => {
    if (!isKataError(e, Code.Unavailable)) throw e;
    throw new KataError(
      Code.Unavailable,
      `sandbox ${sid}: its service is not running; \`kata-ts delete --force ${sid}\` removes what is left of it`,
      { cause: e },
    );
  });
  try {
    const result = await fn(c.task, sid);
    if (opts.endsSandbox === true && containerId === sid && !(await c.serviceGone(serviceExitMs))) {
      ctx.logger.warn("the sandbox's service did not exit after its sandbox was deleted", { sandboxId: sid });
    }
    return result;
  } finally {
    await c.close();
  }
}
