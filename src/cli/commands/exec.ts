// `kata-ts exec`: run another process in a running container, with the caller's stdio, and exit with
// its status. The process spec is the container's own process with the flags applied (as runc does),
// or a whole process.json with --process.

import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Command } from "commander";
import { Code, KataError } from "../../base/errors.js";
import { errField } from "../../base/log.js";
import { loadBundle, parseConfigJson } from "../../oci/bundle.js";
import { parseProcess } from "../../oci/parse-spec.js";
import type { Process } from "../../oci/spec.js";
import { StateStore } from "../../sandbox/persist.js";
import { anyTypes, jsonAny } from "../../shim/task-service.js";
import type { RuntimeContext } from "../runtime-context.js";
import { sandboxOf, withTask } from "../service-client.js";
import { checkPreserveFds, preserveFdsOption } from "../preserve-fds.js";
import { applyRuncExecFlags, checkRuncExecFlags, collect, runcExecHelp, type RuncExecFlags } from "../exec-flags.js";
import { prepareConsole, prepareStandIn, prepareStdio } from "../stdio-bridge.js";
import { attachTerminal, localConsoleSize } from "../terminal.js";
import { ociState, writePidFile } from "./lifecycle.js";

interface ExecFlags extends RuncExecFlags {
  readonly tty?: boolean;
  readonly env: string[];
  readonly cwd?: string;
  readonly user?: string;
  readonly process?: string;
  readonly detach?: boolean;
  readonly preserveFds?: string;
  readonly pidFile?: string;
  readonly consoleSocket?: string;
}

function parseUser(s: string): { uid: number; gid: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(s);
  if (m === null) throw new KataError(Code.InvalidArgument, `--user ${JSON.stringify(s)}: expected UID[:GID]`);
  return { uid: Number(m[1]), gid: Number(m[2] ?? 0) };
}

/** The process to exec: --process FILE as is, or the container's process with args and flags applied. */
export async function execProcessSpec(base: Process | undefined, args: string[], flags: ExecFlags): Promise<Process> {
  if (flags.process !== undefined) {
    const p = parseProcess(parseConfigJson(await readFile(flags.process, "utf8"), flags.process), flags.process);
    return applyRuncExecFlags(p, flags);
  }
  // runc's `exec ID CMD ARGS...` (what follows the id is the command's); `exec ID -- CMD` as before.
  const argv = args[0] === "--" ? args.slice(1) : args;
  if (argv.length === 0) throw new KataError(Code.InvalidArgument, "exec: no command given (or use --process FILE)");
  const p: Process = {
    ...(base ?? { user: { uid: 0, gid: 0 }, cwd: "/" }),
    args: argv,
    terminal: flags.tty === true,
  };
  if (flags.env.length > 0) p.env = [...(p.env ?? []), ...flags.env];
  if (flags.cwd !== undefined) p.cwd = flags.cwd;
  if (flags.user !== undefined) p.user = { ...p.user, ...parseUser(flags.user) };
  return applyRuncExecFlags(p, flags);
}

export function registerExec(program: Command, ctx: () => RuntimeContext): void {
  program
    .command("exec")
    .description("run a new process in a running container")
    .argument("<container-id>")
    .argument("[command...]", "command and arguments")
    .option("-t, --tty", "run the process on a terminal")
    .option(
      "-e, --env <KEY=VALUE>",
      "set an environment variable (repeatable)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option("--cwd <dir>", "working directory in the container")
    .option("-u, --user <uid[:gid]>", "user to run as")
    .option("-p, --process <file>", "process.json with the whole process spec")
    .option("-d, --detach", "do not wait for the process (a process stand-in on the host does)")
    .option("--pid-file <file>", "write the pid of the process on the host (its stand-in, or this command)")
    .option("--console-socket <path>", "with -d and a terminal: unix socket that receives the pty master")
    .option(...preserveFdsOption)
    // runc's other exec flags (exec-flags.ts).
    .option("-g, --additional-gids <gid>", runcExecHelp.additionalGids, collect, [])
    .option("-c, --cap <capability>", runcExecHelp.cap, collect, [])
    .option("--no-new-privs", runcExecHelp.noNewPrivs)
    .option("--apparmor <profile>", runcExecHelp.apparmor)
    .option("--process-label <label>", runcExecHelp.processLabel)
    .option("--cgroup <path>", runcExecHelp.cgroup)
    .option("--ignore-paused", runcExecHelp.ignorePaused)
    .passThroughOptions()
    .action(async (id: string, args: string[], flags: ExecFlags) => {
      checkPreserveFds(flags.preserveFds);
      checkRuncExecFlags(flags);
      const c = ctx();
      const state = await ociState(c, id);
      if (state.status !== "running")
        throw new KataError(Code.FailedPrecondition, `container ${id} is ${state.status}, not running`);
      const base = (await loadBundle(state.bundle)).spec.process;
      const spec = await execProcessSpec(base, args, flags);
      checkConsoleFlags(spec.terminal === true, flags);
      const size = localConsoleSize();
      if (spec.terminal === true && size !== undefined && flags.consoleSocket === undefined) spec.consoleSize = size;
      const execId = `exec-${randomBytes(6).toString("hex")}`;
      const store = new StateStore(c.flags.root);
      const sid = await sandboxOf(store, id);
      const fifoRoot = path.join(store.sandboxDir(sid), "io");
      process.exitCode =
        flags.detach === true
          ? await execDetached(c, { id, execId, sid, spec, fifoRoot, flags })
          : await execAttached(c, { id, execId, spec, fifoRoot, flags });
    });
}

/** runc's rules: a terminal for a detached process goes to a console socket, which needs both. */
function checkConsoleFlags(terminal: boolean, flags: ExecFlags): void {
  if (flags.consoleSocket !== undefined && (!terminal || flags.detach !== true)) {
    throw new KataError(Code.InvalidArgument, "--console-socket goes with -d and a terminal process (-t)");
  }
  if (terminal && flags.detach === true && flags.consoleSocket === undefined) {
    throw new KataError(Code.InvalidArgument, "a detached terminal process needs --console-socket");
  }
}

interface ExecRequest {
  readonly id: string;
  readonly execId: string;
  readonly spec: Process;
  readonly fifoRoot: string;
  readonly flags: ExecFlags;
}

/** In the foreground: this command is the process on the host; it copies stdio and exits with its status. */
async function execAttached(c: RuntimeContext, r: ExecRequest): Promise<number> {
  if (r.flags.pidFile !== undefined) await writePidFile(path.resolve(r.flags.pidFile), process.pid);
  const stdio = await prepareStdio(c.runner, r.fifoRoot);
  try {
    return await withTask(c, r.id, async (task) => {
      const terminal = r.spec.terminal === true;
      const { id, execId } = r;
      await task.exec({ id, execId, terminal, ...stdio.paths, spec: jsonAny(anyTypes.process, r.spec) });
      await task.start({ id, execId });
      const tty = terminal ? attachTerminal(task, id, execId, c.logger) : undefined;
      const { exitStatus } = await task.wait({ id, execId }).finally(() => tty?.restore());
      await stdio.done;
      await task.delete({ id, execId });
      return exitStatus;
    });
  } finally {
    await stdio.cleanup();
    process.stdin.destroy();
  }
}

/** `exec -d`: a stand-in holds the process's stdio and is its pid (conmon waits for it, as for create's). */
async function execDetached(c: RuntimeContext, r: ExecRequest & { readonly sid: string }): Promise<number> {
  const { id, execId } = r;
  const store = new StateStore(c.flags.root);
  const target = { socket: store.socketPath(r.sid), sandboxId: r.sid, id, execId, log: c.flags.log ?? "" };
  const stdio =
    r.flags.consoleSocket === undefined
      ? await prepareStandIn(c.runner, r.fifoRoot, target)
      : await prepareConsole(c.runner, r.fifoRoot, path.resolve(r.flags.consoleSocket), target);
  try {
    await withTask(c, id, async (task) => {
      const terminal = r.spec.terminal === true;
      await task.exec({ id, execId, terminal, ...stdio.paths, spec: jsonAny(anyTypes.process, r.spec) });
      try {
        // Before it starts: a process whose pid the caller could not learn never runs.
        if (r.flags.pidFile !== undefined) await writePidFile(path.resolve(r.flags.pidFile), stdio.pid);
        await task.start({ id, execId });
      } catch (e) {
        await task.delete({ id, execId }).catch((err: unknown) => {
          c.logger.warn("remove an exec that did not start", { containerId: id, execId, err: errField(err) });
        });
        throw e;
      }
    });
  } catch (e) {
    await stdio.abort();
    throw e;
  }
  stdio.commit();
  return 0;
}
