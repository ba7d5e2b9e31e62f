// `kata-ts exec`: run another process in a running container, with the caller's stdio, and exit with
// its status. The process spec is the container's own process with the flags applied (as runc does),
// or a whole process.json with --process.

import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Command } from "commander";
import { Code, KataError } from "../../base/errors.js";
import { loadBundle, parseConfigJson } from "../../oci/bundle.js";
import { parseProcess } from "../../oci/parse-spec.js";
import type { Process } from "../../oci/spec.js";
import { StateStore } from "../../sandbox/persist.js";
import { anyTypes, jsonAny } from "../../shim/task-service.js";
import type { RuntimeContext } from "../runtime-context.js";
import { sandboxOf, withTask } from "../service-client.js";
import { checkPreserveFds, preserveFdsOption } from "../preserve-fds.js";
import { applyRuncExecFlags, checkRuncExecFlags, collect, runcExecHelp, type RuncExecFlags } from "../exec-flags.js";
import { prepareStdio } from "../stdio-bridge.js";
import { attachTerminal, localConsoleSize } from "../terminal.js";
import { ociState } from "./lifecycle.js";

interface ExecFlags extends RuncExecFlags {
  readonly tty?: boolean;
  readonly env: string[];
  readonly cwd?: string;
  readonly user?: string;
  readonly process?: string;
  readonly detach?: boolean;
  readonly preserveFds?: string;
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
    .option("-d, --detach", "do not wait for the process")
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
      const size = localConsoleSize();
      if (spec.terminal === true && size !== undefined) spec.consoleSize = size;
      const execId = `exec-${randomBytes(6).toString("hex")}`;
      const sid = await sandboxOf(new StateStore(c.flags.root), id);
      const fifoRoot = path.join(new StateStore(c.flags.root).sandboxDir(sid), "io");
      const stdio = await prepareStdio(c.runner, fifoRoot, flags.detach === true ? "detached" : "attached");
      try {
        process.exitCode = await withTask(c, id, async (task) => {
          const terminal = spec.terminal === true;
          await task.exec({ id, execId, terminal, ...stdio.paths, spec: jsonAny(anyTypes.process, spec) });
          await task.start({ id, execId });
          if (flags.detach === true) return 0;
          const tty = terminal ? attachTerminal(task, id, execId, c.logger) : undefined;
          const { exitStatus } = await task.wait({ id, execId }).finally(() => tty?.restore());
          await stdio.done;
          await task.delete({ id, execId });
          return exitStatus;
        });
      } finally {
        if (flags.detach !== true) await stdio.cleanup();
        process.stdin.destroy();
      }
    });
}
