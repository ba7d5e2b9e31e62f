// The CLI's side of the per-sandbox service: start one (as `shim start` would), find the one that holds
// a container (through the ID mapping), and call the containerd task API on it.

import { openSync } from "node:fs";
import path from "node:path";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { deadline, settlesWithin } from "../base/async.js";
import { Code, KataError, isKataError } from "../base/errors.js";
import { describeExit } from "../platform/process.js";
import { dialUnix } from "../platform/unix-socket.js";
import { Task } from "../protocol/gen/containerd/runtime/v2/task/shim_pb.js";
import { TtrpcConnection, createClient, type TtrpcClient } from "../protocol/ttrpc/client.js";
import { StateStore } from "../sandbox/persist.js";
import { installRoot, type RuntimeContext } from "./runtime-context.js";
import { boundedTask, loadServiceDeadlines, type ServiceDeadlines } from "./task-deadlines.js";

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

const serviceStartTimeoutMs = 30_000;

/**
 * Starts the service for a new sandbox; resolves with its socket once it listens. `extraArgs` go to
 * `shim-main serve` (containerd's namespace and events address, for the containerd shim).
 */
export async function startService(
  ctx: RuntimeContext,
  sandboxId: string,
  extraArgs: readonly string[] = [],
): Promise<string> {
  const args = [
    path.join(installRoot, "dist/src/cli/shim-main.js"),
    "serve",
    "--root",
    ctx.flags.root,
    "--id",
    sandboxId,
  ];
  if (ctx.flags.log !== undefined) args.push("--log", ctx.flags.log, "--log-format", ctx.flags.logFormat);
  if (ctx.flags.config !== undefined) args.push("--config", path.resolve(ctx.flags.config));
  if (ctx.flags.debug === true) args.push("--debug");
  args.push(...extraArgs);
  // The service outlives this command: its own session, no terminal, stderr into the log (or nowhere).
  const stderr = ctx.flags.log === undefined ? "ignore" : openSync(ctx.flags.log, "a");
  const child = await ctx.runner.spawn(process.execPath, args, { detached: true, stdio: ["ignore", "pipe", stderr] });
  const stdout = child.stdout;
  if (stdout === null) throw new KataError(Code.Internal, "the sandbox service has no stdout pipe");
  return new Promise<string>((resolve, reject) => {
    let out = "";
    let ready = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new KataError(
          Code.DeadlineExceeded,
          `the sandbox service for ${sandboxId} did not start within ${serviceStartTimeoutMs} ms`,
        ),
      );
    }, serviceStartTimeoutMs);
    stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf("\n");
      if (nl < 0) return;
      ready = true;
      clearTimeout(timer);
      const line = out.slice(0, nl);
      stdout.destroy();
      child.unref();
      if (line.startsWith("ready ")) resolve(line.slice("ready ".length));
      else reject(new KataError(Code.Internal, `start the sandbox service: ${line.replace(/^error /, "")}`));
    });
    // Its stdout closes when it exits: a line written just before is read first.
    stdout.once("close", () => {
      if (ready) return;
      void child.exited.then((status) => {
        clearTimeout(timer);
        reject(new KataError(Code.Internal, `the sandbox service ended (${describeExit(status)}) before it was ready`));
      });
    });
  });
}

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

/**
 * Whether a sandbox's service (shim-main, or a `run` hosting it) still listens on its socket. The saved
 * pid is no proof: after a crash or a reboot it may belong to any process.
 */
export async function serviceListening(socketPath: string): Promise<boolean> {
  const d = deadline(5000);
  try {
    const socket = await dialUnix(socketPath, { signal: d.signal, op: "connect to the sandbox service at" });
    socket.destroy();
    return true;
  } catch (e) {
    // Nobody listens: the service is gone. Anything else (a full accept queue, a wedged service that
    // cannot accept in time) is a service that exists.
    if (isKataError(e, Code.Unavailable)) return false;
    return true;
  } finally {
    d.clear();
  }
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
