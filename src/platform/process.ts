// Every child process the runtime starts goes through this port, so tests can script it and so the
// "binary not installed" error is written once (naming the package that provides it).

import { spawn as nodeSpawn, type StdioOptions } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { abortError, raceAbort } from "../base/async.js";
import { Code, KataError, errnoOf } from "../base/errors.js";

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
  kill(signal?: NodeJS.Signals): void;
}

export interface ProcessRunner {
  /** Run to completion, capturing output. Rejects only when the binary cannot start (NOT_FOUND). */
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

function startChild(file: string, args: readonly string[], opts: SpawnOptions): Promise<Child> {
  return new Promise<Child>((resolve, reject) => {
    const cp = nodeSpawn(file, args, {
      stdio: opts.stdio ?? ["ignore", "pipe", "pipe"],
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      ...(opts.env === undefined ? {} : { env: opts.env }),
      ...(opts.detached === undefined ? {} : { detached: opts.detached }),
      ...(opts.argv0 === undefined ? {} : { argv0: opts.argv0 }),
    });
    const exited = new Promise<ExitStatus>((res) => {
      cp.once("exit", (code, signal) => {
        res({ code, signal });
      });
    });
    cp.once("error", (e) => {
      reject(errnoOf(e) === "ENOENT" ? notInstalled(file, e) : e);
    });
    cp.once("spawn", () => {
      // CAST: after 'spawn' the pid is always set.
      const pid = cp.pid as number;
      resolve({
        pid,
        exited,
        stdin: cp.stdin,
        stdout: cp.stdout,
        stderr: cp.stderr,
        kill(signal: NodeJS.Signals = "SIGTERM") {
          if (cp.exitCode === null && cp.signalCode === null) cp.kill(signal);
        },
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

export class NodeProcessRunner implements ProcessRunner {
  spawn(file: string, args: readonly string[], opts: SpawnOptions = {}): Promise<Child> {
    return startChild(file, args, opts);
  }

  async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const max = opts.maxOutputBytes ?? 1 << 20;
    const child = await startChild(file, args, {
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
