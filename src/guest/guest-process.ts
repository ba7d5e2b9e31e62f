// A process the agent started (a container's init through `crun run`, or an exec): its stdio buffers
// and its exit status, which is recorded once and then served to every WaitProcess.

import { readFile } from "node:fs/promises";
import type { Writable } from "node:stream";
import { Code, KataError, errnoOf, ignoreErrno } from "../base/errors.js";
import { raceAbort } from "../base/async.js";
import type { Child, ExitStatus } from "../platform/process.js";
import { OutputBuffer } from "./output-buffer.js";
import { constants } from "node:os";

/** Shell convention: the exit code, or 128 + the signal's number. */
export function exitCodeOf(s: ExitStatus): number {
  if (s.signal !== null) return 128 + constants.signals[s.signal];
  return s.code ?? 255;
}

const signalNames: ReadonlyMap<number, NodeJS.Signals> = new Map(
  // CAST: the keys of os.constants.signals are exactly the signal names.
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals] as const),
);

export class GuestProcess {
  readonly execId: string;
  readonly pid: number;
  readonly stdout: OutputBuffer;
  readonly stderr: OutputBuffer;
  readonly exitCode: Promise<number>;
  readonly #stdin: Writable | null;
  readonly #child: Child;
  #exited = false;

  /** Set for a process on a terminal: where the pty helper reads a new size from. */
  readonly resizeFile: string | undefined;
  /** For an exec: where crun wrote the pid of the process it runs in the container. */
  readonly #pidFile: string | undefined;

  constructor(execId: string, child: Child, resizeFile?: string, pidFile?: string) {
    this.execId = execId;
    this.resizeFile = resizeFile;
    this.#pidFile = pidFile;
    this.#child = child;
    this.pid = child.pid;
    this.stdout = new OutputBuffer(child.stdout);
    this.stderr = new OutputBuffer(child.stderr);
    this.#stdin = child.stdin;
    // A container that never reads its stdin makes writes fail with EPIPE once it exits: not our error.
    this.#stdin?.on("error", () => undefined);
    this.exitCode = child.exited.then((s) => {
      this.#exited = true;
      return exitCodeOf(s);
    });
  }

  get exited(): boolean {
    return this.#exited;
  }

  wait(signal?: AbortSignal): Promise<number> {
    return raceAbort(this.exitCode, signal, `wait process ${this.execId}`);
  }

  async writeStdin(data: Uint8Array, signal?: AbortSignal): Promise<number> {
    const stdin = this.#stdin;
    if (stdin === null || stdin.writableEnded || stdin.destroyed) {
      throw new KataError(Code.FailedPrecondition, `stdin of ${this.execId} is closed`);
    }
    await raceAbort(
      new Promise<void>((resolve, reject) => {
        stdin.write(data, (e) => {
          if (e) reject(new KataError(Code.FailedPrecondition, `write stdin of ${this.execId}`, { cause: e }));
          else resolve();
        });
      }),
      signal,
      "write stdin",
    );
    return data.length;
  }

  closeStdin(): void {
    this.#stdin?.end();
  }

  /**
   * Sends signal number `signal` to the process (an exec's, or the pty helper's on SIGUSR1) through its
   * child handle, which does nothing once the child is reaped: a recycled pid is never signalled.
   * Signal 0 only checks that the process is there. INVALID_ARGUMENT for a number that is no signal.
   */
  signal(signal: number): void {
    if (signal === 0) return;
    const name = signalNames.get(signal);
    if (name === undefined) throw new KataError(Code.InvalidArgument, `signal ${signal} is not a signal number`);
    this.#child.kill(name);
  }

  /**
   * Sends `signal` to the process crun runs in the container (an exec's), not to crun: crun exec stays
   * the process's parent and SIGKILL cannot be forwarded, so signalling crun left the process running
   * (and holding its output open). Until crun has written the pid, or once crun is reaped, this falls back
   * to signal(). INVALID_ARGUMENT for a number that is no signal.
   */
  async signalInContainer(signal: number): Promise<void> {
    const name = signalNames.get(signal);
    if (signal === 0 || this.#pidFile === undefined) {
      this.signal(signal);
      return;
    }
    if (name === undefined) throw new KataError(Code.InvalidArgument, `signal ${signal} is not a signal number`);
    const text = await readFile(this.#pidFile, "utf8").catch(ignoreErrno("ENOENT"));
    const pid = Number(text?.trim());
    // While crun has not been reaped its child is not reaped either (crun waits for it): the pid is not reused.
    if (!Number.isInteger(pid) || pid <= 1 || this.#exited) {
      this.signal(signal);
      return;
    }
    try {
      process.kill(pid, name);
    } catch (e) {
      if (errnoOf(e) !== "ESRCH") throw e;
    }
  }

  /** Signals crun itself (used only when the container was never created by crun). */
  killRuntime(): void {
    this.#child.kill("SIGKILL");
  }
}

/**
 * Whether process `pid` catches `signal`, from the SigCgt mask in /proc/<pid>/status: false when it does
 * not (yet), or is gone.
 */
export async function catchesSignal(pid: number, signal: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(ignoreErrno("ENOENT", "ESRCH"));
  const hex = status === undefined ? undefined : /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (hex === undefined || signal < 1 || signal > 64) return false;
  return ((BigInt(`0x${hex}`) >> BigInt(signal - 1)) & 1n) === 1n;
}
