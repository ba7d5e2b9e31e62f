// crun, the OCI runtime inside the guest. Each container runs as `crun run` in the foreground: crun
// waits for the container and exits with its status, so the process stays a child the agent can
// wait for (a detached `crun create` would reparent it to PID 1 and lose its exit status).

import { lstat } from "node:fs/promises";
import path from "node:path";
import { deadline } from "../base/async.js";
import { Code, KataError, ignoreErrno, isKataError, withSuppressed } from "../base/errors.js";
import { awaitFile } from "./await-file.js";
import { runChecked, type Child, type ProcessRunner, type RunResult } from "../platform/process.js";

/** A process on a terminal: run under the pty helper, which resizes it on SIGUSR1 from resizeFile. */
export interface TtyOptions {
  readonly rows: number;
  readonly cols: number;
  readonly resizeFile: string;
}

/**
 * Deadlines of crun's short commands: each fails DEADLINE_EXCEEDED (naming the command) past its own, so
 * a crun stuck on a frozen cgroup cannot hang an RPC. kill and delete run on teardown paths, which must
 * finish even then: they get less.
 */
export const crunTimeoutsMs: Readonly<Record<CrunCommand, number>> = {
  kill: 5_000,
  delete: 5_000,
  state: 5_000,
  update: 10_000,
  pause: 10_000,
  resume: 10_000,
  ps: 10_000,
};

/** The crun commands that run to completion (run and exec start long-lived processes instead). */
export type CrunCommand = "kill" | "delete" | "state" | "update" | "pause" | "resume" | "ps";

export interface CrunOptions {
  readonly binary: string;
  /**
   * A launcher that runs crun from a sealed in-memory copy (kata-ts-sealed-exec): crun then skips the
   * copy of itself its CVE-2019-5736 defence makes when its binary is writable. Absent: crun is run direct.
   */
  readonly launcher?: string;
  /**
   * The crun verbs the launcher runs (default: all). On the image's read-only tools disk crun makes no
   * copy of itself, and the launcher's copy cost `crun run` 75–195 ms more under TCG, but made `crun
   * exec` 25 ms faster (paired medians, docs/benchmarks.md): there only exec goes through it.
   */
  readonly launcherVerbs?: ReadonlySet<"run" | "exec" | CrunCommand>;
  /** The static pty helper (kata-ts-tty); absent, terminal processes are refused. */
  readonly ttyHelper?: string;
  /** crun's state directory (--root), on guest tmpfs. */
  readonly stateDir: string;
  /** Per-command deadlines instead of crunTimeoutsMs (tests, slow guests). */
  readonly timeoutsMs?: Partial<Record<CrunCommand, number>>;
}

/**
 * What the agent asks of the OCI runtime, one method per crun verb it uses. Crun is the real one; the
 * component tests' fake crun implements this too (Crun's #private fields make the class nominal).
 */
/** How long a start waits for crun to have made the container. */
const createdWaitMs = 10_000;

export interface CrunPort {
  /** `crun run`: starts the container's init with piped stdio, held as a child until it exits. */
  run(containerId: string, bundleDir: string, tty?: TtyOptions): Promise<Child>;
  /**
   * `crun exec --process`: starts another process in a running container. With `pidFile`, crun writes
   * there the pid of the process it started (crun stays its parent, so a signal to crun's pid reaches only crun).
   */
  exec(containerId: string, processJsonPath: string, tty?: TtyOptions, pidFile?: string): Promise<Child>;
  kill(containerId: string, signal: number, all: boolean): Promise<void>;
  delete(containerId: string): Promise<void>;
  update(containerId: string, resourcesJsonPath: string): Promise<void>;
  pause(containerId: string): Promise<void>;
  resume(containerId: string): Promise<void>;
  /** Guest pids of the container's processes. */
  ps(containerId: string): Promise<number[]>;
}

export class Crun implements CrunPort {
  readonly #runner: ProcessRunner;
  readonly #opts: CrunOptions;

  constructor(runner: ProcessRunner, opts: CrunOptions) {
    this.#runner = runner;
    this.#opts = opts;
  }

  #args(...rest: string[]): string[] {
    return ["--root", this.#opts.stateDir, ...rest];
  }

  /** The program and arguments that run crun's `verb` with `args`: through the launcher when it runs that verb. */
  #command(verb: "run" | "exec" | CrunCommand, args: string[]): [string, string[]] {
    const l = this.#opts.launcher;
    const launched = l !== undefined && (this.#opts.launcherVerbs?.has(verb) ?? true);
    return launched ? [l, [this.#opts.binary, ...args]] : [this.#opts.binary, args];
  }

  /**
   * Starts the container's process with piped stdio; resolves once crun is running. With a terminal,
   * crun runs on the helper's pty and the container (configured without one) inherits it: one pty,
   * which the helper resizes.
   */
  async run(containerId: string, bundleDir: string, tty?: TtyOptions): Promise<Child> {
    const child = await this.#spawn("run", this.#args("run", "--bundle", bundleDir, containerId), tty);
    await this.#created(containerId, child);
    return child;
  }

  /**
   * Waits until crun has made the container (its state file exists) or crun exited: a start that
   * returned before that would let a signal sent at once find no container (crun kill: no status file),
   * and count as "already ended" while the container then runs on. Bounded: crun takes ~1 s under TCG.
   */
  async #created(containerId: string, child: Child): Promise<void> {
    const status = path.join(this.#opts.stateDir, containerId, "status");
    await awaitFile(this.#opts.stateDir, status, {
      until: child.exited,
      timeoutMs: createdWaitMs,
      fallbackPollMs: 20,
    });
  }

  /** Starts an extra process in a running container (ExecProcess) from a process.json. */
  exec(containerId: string, processJsonPath: string, tty?: TtyOptions, pidFile?: string): Promise<Child> {
    const pid = pidFile === undefined ? [] : ["--pid-file", pidFile];
    return this.#spawn("exec", this.#args("exec", ...pid, "--process", processJsonPath, containerId), tty);
  }

  #spawn(verb: "run" | "exec", args: string[], tty: TtyOptions | undefined): Promise<Child> {
    const stdio = { stdio: ["pipe", "pipe", "pipe"] as "pipe"[] };
    const [file, fileArgs] = this.#command(verb, args);
    if (tty === undefined) return this.#runner.spawn(file, fileArgs, stdio);
    const helper = this.#opts.ttyHelper;
    if (helper === undefined) {
      return Promise.reject(
        new KataError(Code.FailedPrecondition, "terminal processes need kata-ts-tty in the guest image"),
      );
    }
    return this.#runner.spawn(
      helper,
      ["run", String(tty.rows), String(tty.cols), tty.resizeFile, "--", file, ...fileArgs],
      stdio,
    );
  }

  /**
   * Sends `signal` to the container's init, or with `all` to every process in its cgroup. A container that
   * already ended (crun reports it stopped, or keeps no state for it) has nothing left to signal: that is
   * success, not an error (youki's kill_one_process treats ESRCH the same way).
   */
  async kill(containerId: string, signal: number, all: boolean, callerSignal?: AbortSignal): Promise<void> {
    const args = ["kill"];
    if (all) args.push("--all");
    args.push(containerId, String(signal));
    try {
      await this.#run("kill", args, callerSignal);
    } catch (e) {
      if (isAborted(e)) throw e;
      let ended: boolean;
      try {
        ended = await this.#ended(containerId, callerSignal);
      } catch (checkError) {
        throw withSuppressed(e, [checkError]);
      }
      if (!ended) throw e;
    }
  }

  /** `crun delete --force`: stops what still runs and removes crun's state (a missing container is fine). */
  async delete(containerId: string, callerSignal?: AbortSignal): Promise<void> {
    await this.#run("delete", ["delete", "--force", containerId], callerSignal);
  }

  async update(containerId: string, resourcesJsonPath: string, callerSignal?: AbortSignal): Promise<void> {
    await this.#run("update", ["update", "--resources", resourcesJsonPath, containerId], callerSignal);
  }

  async pause(containerId: string, callerSignal?: AbortSignal): Promise<void> {
    await this.#run("pause", ["pause", containerId], callerSignal);
  }

  async resume(containerId: string, callerSignal?: AbortSignal): Promise<void> {
    await this.#run("resume", ["resume", containerId], callerSignal);
  }

  /** Guest pids of the container's processes. */
  async ps(containerId: string, callerSignal?: AbortSignal): Promise<number[]> {
    const r = await this.#run("ps", ["ps", "--format", "json", containerId], callerSignal);
    const parsed = parseJson(r.stdout, `crun ps ${containerId}`);
    if (!Array.isArray(parsed))
      throw new KataError(Code.Internal, `crun ps ${containerId}: output is not a JSON array`);
    return parsed.filter((p): p is number => typeof p === "number");
  }

  /** The container's OCI state as crun reports it: status "created", "running", "paused" or "stopped". */
  async state(containerId: string, callerSignal?: AbortSignal): Promise<{ status: string; pid: number }> {
    const r = await this.#run("state", ["state", containerId], callerSignal);
    const parsed = parseJson(r.stdout, `crun state ${containerId}`);
    if (typeof parsed !== "object" || parsed === null || !("status" in parsed) || typeof parsed.status !== "string") {
      throw new KataError(Code.Internal, `crun state ${containerId}: output has no status`);
    }
    const pid = "pid" in parsed && typeof parsed.pid === "number" ? parsed.pid : 0;
    return { status: parsed.status, pid };
  }

  /** Runs one short crun command under its deadline (and the caller's signal, if any). */
  async #run(command: CrunCommand, args: string[], callerSignal: AbortSignal | undefined): Promise<RunResult> {
    const d = deadline(this.#opts.timeoutsMs?.[command] ?? crunTimeoutsMs[command], callerSignal);
    try {
      const [file, fileArgs] = this.#command(command, this.#args(...args));
      return await runChecked(this.#runner, file, fileArgs, { signal: d.signal });
    } finally {
      d.clear();
    }
  }

  /** Whether the container has ended: crun reports it stopped, or has no state left for it. */
  async #ended(containerId: string, callerSignal: AbortSignal | undefined): Promise<boolean> {
    try {
      return (await this.state(containerId, callerSignal)).status === "stopped";
    } catch (e) {
      if (isAborted(e)) throw e;
      // crun keeps a container's state in <root>/<id>/status, and the foreground `crun run` removes it once
      // its container exited: no file, no container (checked after the failure: it may just have gone).
      const status = await lstat(path.join(this.#opts.stateDir, containerId, "status")).catch(ignoreErrno("ENOENT"));
      if (status === undefined) return true;
      throw e;
    }
  }
}

/** A failure that is the deadline or the caller's cancellation, not crun's answer. */
function isAborted(e: unknown): boolean {
  return isKataError(e, Code.DeadlineExceeded) || isKataError(e, Code.Cancelled);
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KataError(Code.Internal, `${what}: output is not JSON`, { cause: e });
  }
}
