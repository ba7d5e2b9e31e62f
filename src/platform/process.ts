// Every child process the runtime starts goes through this port, so tests can script it and so the
// "binary not installed" error is written once (naming the package that provides it). On the host it
// starts each child through the launcher (launcher.ts), so a child holds only the descriptors it is given.

import { spawn as nodeSpawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { existsSync } from "node:fs";
import { Duplex, PassThrough, type Readable, type Writable } from "node:stream";
import { abortError, raceAbort } from "../base/async.js";
import { Code, KataError, errnoOf } from "../base/errors.js";
import { parseLaunchReport, planLaunch, type LaunchFailure } from "./launcher.js";

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface RunResult extends ExitStatus {
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly signal?: AbortSignal;
  readonly input?: string | Uint8Array;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Output beyond this many bytes per stream is dropped (the tail is kept). */
  readonly maxOutputBytes?: number;
  /** argv[0] for the program (default: `file`), e.g. an OCI hook's args[0]. */
  readonly argv0?: string;
  /**
   * Start the child as the leader of a new session and process group (setsid), and on abort SIGKILL the
   * whole group: a grandchild that inherited the output pipes would otherwise keep run() waiting for EOF.
   */
  readonly killProcessGroup?: boolean;
}

export interface SpawnOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Node's stdio option (default: ignore, pipe, pipe). With a launcher, these are the only descriptors
   * the child holds: 0-2, and 3.. for entries past 2 (which must leave no empty slot below a given one).
   */
  readonly stdio?: StdioOptions;
  readonly detached?: boolean;
  /** argv[0] for the program (default: `file`). */
  readonly argv0?: string;
}

export interface Child {
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** This process's end of each stdio entry that is a "pipe" (null for the others), as in Node's `stdio`. */
  readonly stdio: readonly (Readable | Writable | null)[];
  kill(signal?: NodeJS.Signals): void;
  /** Lets this process exit while the child runs (a detached service). */
  unref(): void;
}

export interface ProcessRunner {
  /** Run to completion, capturing output. Rejects only when the program cannot start (NOT_FOUND: not installed). */
  run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Start a long-lived child such as qemu. Throws NOT_FOUND when the binary does not exist. */
  spawn(file: string, args: readonly string[], opts?: SpawnOptions): Promise<Child>;
}

/** Debian packages that provide the binaries we start, for "not installed" errors. */
const packageOf: Readonly<Record<string, string>> = {
  "qemu-system-x86_64": "qemu-system-x86",
  crun: "crun",
  busybox: "busybox-static",
  ip: "iproute2",
  tc: "iproute2",
  xz: "xz-utils",
  "dpkg-deb": "dpkg",
  "apt-get": "apt",
  mount: "mount",
  umount: "mount",
  containerd: "containerd",
  ctr: "containerd",
  nsenter: "util-linux",
};

export function notInstalled(file: string, cause?: unknown): KataError {
  const base = file.split("/").pop() ?? file;
  const pkg = packageOf[base];
  const hint = pkg === undefined ? "" : ` (install the Debian package ${pkg}: apt-get install -y ${pkg})`;
  return new KataError(Code.NotFound, `${file} is not installed${hint}`, cause === undefined ? {} : { cause });
}

/** One line saying how a process ended: "exit code 3", "signal SIGKILL". */
export function describeExit(s: ExitStatus): string {
  return s.signal !== null ? `signal ${s.signal}` : `exit code ${String(s.code)}`;
}

/** Whether a process with this pid exists (kill(pid, 0); EPERM means it exists but is not ours). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoOf(e) === "EPERM";
  }
}

/** Conventional shell exit status: the code, or 128 + signal number. */
export function exitStatusNumber(s: ExitStatus, signalNumbers: Readonly<Record<string, number>>): number {
  if (s.signal !== null) return 128 + (signalNumbers[s.signal] ?? 0);
  return s.code ?? 255;
}

function launchError(file: string, f: LaunchFailure): KataError {
  if (f.step === "exec" && f.errno === "ENOENT") return notInstalled(file);
  if (f.step === "exec")
    return new KataError(Code.FailedPrecondition, `${file} cannot be started: ${f.errno} ${f.message}`);
  return new KataError(
    Code.Internal,
    `start ${file}: close the descriptors it must not inherit: ${f.errno} ${f.message}`,
  );
}

/** The error of a spawn that failed before anything ran: a missing launcher, program or cwd. */
function spawnError(file: string, launcher: string | undefined, cwd: string | undefined, e: Error): Error {
  if (errnoOf(e) !== "ENOENT") return e;
  if (launcher === undefined) return notInstalled(file, e);
  if (!existsSync(launcher)) {
    return new KataError(
      Code.NotFound,
      `${launcher} is missing (it starts every child without the caller's stray descriptors): build it with npm run build`,
      { cause: e },
    );
  }
  return new KataError(Code.NotFound, `start ${file}: working directory ${String(cwd)} does not exist`, { cause: e });
}

interface ChildStreams {
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  readonly stdio: readonly (Readable | Writable | null)[];
}

/**
 * The child's output streams, read from now on into buffers the caller drains when it likes. Node drops
 * what an unread output stream holds once the child exits (it resumes it with no reader), and a
 * short-lived program may exit before the caller's listeners are attached: before the launcher's report
 * arrives, or while the caller awaits something else first (the guest agent waits for crun to have made
 * the container; a fast `echo` container then lost its output under load). A caller destroying one of
 * these destroys the pipe under it too (startService does, once the service said it is ready).
 */
function heldStreams(cp: ChildProcess, count: number): ChildStreams {
  const hold = (r: Readable | null): Readable | null => {
    if (r === null) return null;
    const held = new PassThrough();
    r.pipe(held);
    r.once("error", (e) => held.destroy(e));
    held.once("close", () => {
      r.destroy();
    });
    return held;
  };
  const stdout = hold(cp.stdout);
  const stderr = hold(cp.stderr);
  const stdio = cp.stdio.slice(0, count).map((s, i): Readable | Writable | null => {
    if (i === 0) return cp.stdin;
    if (i === 1) return stdout;
    if (i === 2) return stderr;
    // CAST: Node makes a socket (a socketpair's end) for a "pipe" entry past stderr (nothing for the others).
    return s === null || s === undefined ? null : holdDuplex(s as Duplex);
  });
  return { stdin: cp.stdin, stdout, stderr, stdio };
}

/** heldStreams' hold for an entry past stderr, which is a two-way channel: writes go straight through. */
function holdDuplex(raw: Duplex): Duplex {
  const held = new Duplex({
    // The child closing its end closes ours (a reader waiting for 'close' gets it, as with a plain pipe).
    allowHalfOpen: false,
    read() {
      // Pushed as it arrives (see below): control channels carry little.
    },
    write(chunk: Buffer, enc: BufferEncoding, cb: (e?: Error | null) => void) {
      raw.write(chunk, enc, cb);
    },
    final(cb: (e?: Error | null) => void) {
      raw.end();
      cb();
    },
  });
  raw.on("data", (d: Buffer) => held.push(d));
  raw.once("end", () => held.push(null));
  raw.once("error", (e) => held.destroy(e));
  held.once("close", () => {
    raw.destroy();
  });
  return held;
}

function childOf(cp: ChildProcess, exited: Promise<ExitStatus>, streams: ChildStreams): Child {
  // CAST: after 'spawn' the pid is always set.
  const pid = cp.pid as number;
  return {
    pid,
    exited,
    ...streams,
    kill(signal: NodeJS.Signals = "SIGTERM") {
      if (cp.exitCode === null && cp.signalCode === null) cp.kill(signal);
    },
    unref() {
      cp.unref();
    },
  };
}

/**
 * Starts `file`, through `launcher` when there is one. Resolves once the program itself runs: with a
 * launcher, when its status pipe closed empty (the program was exec'd), else at Node's 'spawn'.
 */
function startChild(
  launcher: string | undefined,
  file: string,
  args: readonly string[],
  opts: SpawnOptions,
): Promise<Child> {
  return new Promise<Child>((resolve, reject) => {
    const stdio = opts.stdio ?? ["ignore", "pipe", "pipe"];
    const plan =
      launcher === undefined
        ? undefined
        : planLaunch(file, args, {
            stdio,
            ...(opts.argv0 === undefined ? {} : { argv0: opts.argv0 }),
          });
    const cp = nodeSpawn(launcher ?? file, plan?.args ?? args, {
      stdio: plan?.stdio ?? stdio,
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      ...(opts.env === undefined ? {} : { env: opts.env }),
      ...(opts.detached === undefined ? {} : { detached: opts.detached }),
      ...(opts.argv0 === undefined || plan !== undefined ? {} : { argv0: opts.argv0 }),
    });
    const exited = new Promise<ExitStatus>((res) => {
      cp.once("exit", (code, signal) => {
        res({ code, signal });
      });
    });
    cp.once("error", (e) => {
      reject(spawnError(file, launcher, opts.cwd, e));
    });
    cp.once("spawn", () => {
      const stdioCount = typeof stdio === "string" ? 3 : Math.max(3, stdio.length);
      if (plan === undefined) {
        resolve(childOf(cp, exited, heldStreams(cp, stdioCount)));
        return;
      }
      const streams = heldStreams(cp, stdioCount);
      // CAST: the plan's status entry is a "pipe", so Node made a readable stream for it.
      const status = cp.stdio[plan.statusIndex] as Readable;
      let report = "";
      status.setEncoding("utf8");
      status.on("data", (d: string) => {
        report += d;
      });
      status.once("close", () => {
        const failure = parseLaunchReport(report);
        if (failure === undefined) resolve(childOf(cp, exited, streams));
        else reject(launchError(file, failure));
      });
    });
  });
}

/**
 * SIGKILLs the process group led by `pid`, also after the leader exited: run() still waits on the group's
 * pipes then, and the kernel keeps the pid reserved as a group id while any member lives.
 */
function killProcessGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch (e) {
    // ESRCH: every member of the group is already gone, which is the state we wanted.
    if (errnoOf(e) !== "ESRCH") throw e;
  }
}

export interface NodeProcessRunnerOptions {
  /**
   * native/kata-ts-exec (see launcher.ts): every child starts through it and holds only the descriptors
   * named in its stdio. Without it (the guest agent, which runs as the VM's init; unit tests) a child also
   * inherits every descriptor this process holds without close-on-exec.
   */
  readonly launcher?: string;
}

export class NodeProcessRunner implements ProcessRunner {
  readonly #launcher: string | undefined;

  constructor(opts: NodeProcessRunnerOptions = {}) {
    this.#launcher = opts.launcher;
  }

  spawn(file: string, args: readonly string[], opts: SpawnOptions = {}): Promise<Child> {
    return startChild(this.#launcher, file, args, opts);
  }

  async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const max = opts.maxOutputBytes ?? 1 << 20;
    const child = await startChild(this.#launcher, file, args, {
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      ...(opts.env === undefined ? {} : { env: opts.env }),
      ...(opts.argv0 === undefined ? {} : { argv0: opts.argv0 }),
      ...(opts.killProcessGroup === true ? { detached: true } : {}),
    });
    const collect = (r: Readable | null): Promise<string> =>
      new Promise((res) => {
        if (r === null) {
          res("");
          return;
        }
        let chunks: Buffer[] = [];
        let size = 0;
        r.on("data", (d: Buffer) => {
          chunks.push(d);
          size += d.length;
          if (size > 2 * max) {
            const all = Buffer.concat(chunks);
            chunks = [all.subarray(all.length - max)];
            size = max;
          }
        });
        r.on("close", () => {
          const all = Buffer.concat(chunks);
          res(all.subarray(Math.max(0, all.length - max)).toString("utf8"));
        });
      });
    const onAbort = (): void => {
      if (opts.killProcessGroup === true) killProcessGroup(child.pid);
      else child.kill("SIGKILL");
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.signal?.aborted === true) onAbort();
    if (opts.input !== undefined && child.stdin !== null) {
      child.stdin.on("error", () => {
        // EPIPE: the child did not read its input; its exit status tells the story.
      });
      child.stdin.end(opts.input);
    }
    const [stdout, stderr, status] = await Promise.all([collect(child.stdout), collect(child.stderr), child.exited]);
    opts.signal?.removeEventListener("abort", onAbort);
    return { ...status, stdout, stderr };
  }
}

/**
 * Runs `file` and throws (naming the command, its exit and stderr) unless it exits 0. When `opts.signal`
 * aborts, the child is killed and the call rejects at once with CANCELLED or DEADLINE_EXCEEDED naming the
 * command, without waiting for a child that does not die (stuck in D state, say).
 */
export async function runChecked(
  runner: ProcessRunner,
  file: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const command = `${file} ${args.join(" ")}`;
  const r = await raceAbort(runner.run(file, args, opts), opts.signal, command);
  // A child that failed as the signal aborted most likely died of the abort: report that, not its exit.
  if (r.code !== 0 && opts.signal?.aborted === true) throw abortError(opts.signal, command);
  if (r.code !== 0) {
    const err = r.stderr.trim().split("\n").slice(-5).join(" | ");
    throw new KataError(Code.Internal, `${command}: ${describeExit(r)}${err === "" ? "" : `: ${err}`}`);
  }
  return r;
}
