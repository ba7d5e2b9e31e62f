// Starting a sandbox's service and telling whether one listens: all that the containerd shim's
// short-lived `start` needs, so it loads no protobuf, ttrpc or VM code (it runs once per container).

import { openSync } from "node:fs";
import path from "node:path";
import { deadline } from "../base/async.js";
import { Code, KataError, isKataError } from "../base/errors.js";
import { qemuSocketNames } from "../hypervisor/qemu/socket-names.js";
import { describeExit } from "../platform/process.js";
import { dialUnix } from "../platform/unix-socket.js";
import { checkSandboxSockets } from "../sandbox/socket-paths.js";
import { serviceCommand } from "./host-snapshot.js";
import { installRoot } from "./paths.js";
import type { RuntimeContext } from "./runtime-context.js";

/** Refuses, before anything starts, a sandbox id whose sockets under this --root would not fit sun_path. */
export function checkSandboxId(root: string, sandboxId: string): void {
  checkSandboxSockets(root, sandboxId, Object.values(qemuSocketNames));
}

const serviceStartTimeoutMs = 30_000;

/**
 * Starts the service for a new sandbox; resolves with its socket once it listens. `extraArgs` go to
 * `shim-main serve` (containerd's namespace and events address, for the containerd shim).
 */
export async function startService(
  ctx: Pick<RuntimeContext, "flags" | "runner">,
  sandboxId: string,
  extraArgs: readonly string[] = [],
): Promise<string> {
  const args = ["serve", "--root", ctx.flags.root, "--id", sandboxId];
  if (ctx.flags.log !== undefined) args.push("--log", ctx.flags.log, "--log-format", ctx.flags.logFormat);
  if (ctx.flags.config !== undefined) args.push("--config", path.resolve(ctx.flags.config));
  if (ctx.flags.debug === true) args.push("--debug");
  args.push(...extraArgs);
  // The service outlives this command: its own session, no terminal, stderr into the log (or nowhere).
  const stderr = ctx.flags.log === undefined ? "ignore" : openSync(ctx.flags.log, "a");
  // From this process's startup snapshot when it has one: the service then starts with everything loaded.
  const argv = serviceCommand(installRoot, process.execArgv, args);
  const child = await ctx.runner.spawn(process.execPath, argv, { detached: true, stdio: ["ignore", "pipe", stderr] });
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
