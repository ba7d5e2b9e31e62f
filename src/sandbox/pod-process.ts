// One process of a pod as the host sees it (a container's init, or an exec): where its stdio goes, and
// its exit status once it has one. Stdio paths are opened by the service itself: containerd's fifos,
// or /proc/<pid>/fd/N of the CLI that asked (the container's stdio is the caller's, as with runc).

import {
  constants as fsc,
  createReadStream,
  createWriteStream,
  fstatSync,
  open as openCb,
  type WriteStream,
} from "node:fs";
import type { Readable } from "node:stream";
import { isatty } from "node:tty";
import { streamFromFd } from "../platform/fd-stream.js";
import { deferred } from "../base/async.js";
import { Code, describeError, isKataError } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import type { AgentApi } from "../agent-client/agent-client.js";
import { pumpInput, pumpOutput } from "./io.js";

export interface StdioPaths {
  /** "" when the process has no such stream. */
  readonly stdin: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminal: boolean;
}

export type ProcessStatus = "created" | "running" | "stopped";

export interface ExitInfo {
  readonly exitStatus: number;
  readonly exitedAt: Date;
}

/** After the process exits, how long its output may take to drain. */
const drainAfterExitMs = 10_000;
/** Exit status reported when the VM (and so the process) is gone without a status. */
export const lostExitStatus = 255;

/**
 * Opens a process's stdin source. A terminal, fifo or pipe is read through the event loop: a
 * thread-pool read(2) on one would block until input comes, and keep the process from ever exiting.
 * A regular file (or /dev/null) is read the ordinary way.
 */
async function openReader(p: string): Promise<Readable> {
  // A raw fd, not a FileHandle: the streams below own it (a FileHandle would close it when collected).
  const fd = await new Promise<number>((resolve, reject) => {
    openCb(p, fsc.O_RDONLY | fsc.O_NONBLOCK, (e, n) => {
      if (e === null) resolve(n);
      else reject(e);
    });
  });
  const st = fstatSync(fd);
  if (st.isFIFO() || st.isSocket() || (st.isCharacterDevice() && isatty(fd))) {
    return streamFromFd(fd, { readable: true, writable: false }, p).pause();
  }
  return createReadStream("", { fd }).pause();
}

function openWriter(p: string): Promise<WriteStream> {
  return new Promise((resolve, reject) => {
    // Append, never truncate: /proc/<pid>/fd/1 of a caller may be a file it redirected to.
    const w = createWriteStream(p, { flags: "a" });
    w.once("open", () => {
      resolve(w);
    });
    w.once("error", reject);
  });
}

export class PodProcess {
  readonly containerId: string;
  readonly execId: string;
  readonly stdio: StdioPaths;
  status: ProcessStatus = "created";
  exit: ExitInfo | undefined;
  readonly #exited = deferred<ExitInfo>();
  readonly #settled = deferred<undefined>();
  readonly #log: Logger;
  #closeStdin: (() => void) | undefined;
  #writers: Partial<Record<"stdout" | "stderr", WriteStream>> = {};
  #input: Readable | undefined;

  constructor(containerId: string, execId: string, stdio: StdioPaths, log: Logger) {
    this.containerId = containerId;
    this.execId = execId;
    this.stdio = stdio;
    this.#log = log;
  }

  get exited(): Promise<ExitInfo> {
    return this.#exited.promise;
  }

  /** Resolves once the process's copiers and waiter have finished (its stdio is closed then). */
  get settled(): Promise<void> {
    return this.#settled.promise;
  }

  /** Records an exit that did not come from the guest (killed before it started, VM gone). */
  markStopped(exitStatus: number): void {
    if (this.exit !== undefined) return;
    this.status = "stopped";
    this.exit = { exitStatus, exitedAt: new Date() };
    this.#exited.resolve(this.exit);
  }

  /**
   * Opens the stdio paths, at create time: a caller's /proc/<pid>/fd/N exists only while the caller
   * waits for the answer, and containerd expects its fifos opened by then too.
   */
  async open(): Promise<void> {
    try {
      for (const which of ["stdout", "stderr"] as const) {
        const p = this.stdio[which];
        if (p !== "") this.#writers[which] = await openWriter(p);
      }
      if (this.stdio.stdin !== "") this.#input = await openReader(this.stdio.stdin);
    } catch (e) {
      this.releaseStdio();
      throw e;
    }
  }

  /** Closes the stdio of a process that will never run (deleted before start). */
  releaseStdio(): void {
    for (const w of Object.values(this.#writers)) w.destroy();
    this.#writers = {};
    this.#input?.destroy();
    this.#input = undefined;
  }

  /**
   * Called once the process runs in the guest: copies its stdio and waits for its exit. `onExit`
   * runs after the output has drained, before waiters are released.
   */
  attach(agent: AgentApi, onExit: (exit: ExitInfo) => Promise<void>, onFirstOutput?: () => void): void {
    this.status = "running";
    const ids = { containerId: this.containerId, execId: this.execId === this.containerId ? "" : this.execId };
    const stop = new AbortController();
    const outputs: Promise<void>[] = [];
    const writers: WriteStream[] = [];
    for (const which of ["stdout", "stderr"] as const) {
      const w = this.#writers[which];
      if (w === undefined) continue;
      writers.push(w);
      outputs.push(
        pumpOutput(agent, which, ids, w, stop.signal, onFirstOutput).catch((e: unknown) => {
          if (!stop.signal.aborted)
            this.#log.warn(`${which} copy stopped`, { containerId: this.containerId, err: describeError(e) });
        }),
      );
    }
    const input = this.#input;
    if (input !== undefined) {
      this.#closeStdin = () => {
        input.destroy();
        void agent.closeStdin(ids, { timeoutMs: 5000 }).catch(() => undefined);
      };
      void pumpInput(agent, ids, input, stop.signal).catch((e: unknown) => {
        this.#log.warn("stdin copy stopped", { containerId: this.containerId, err: describeError(e) });
      });
    }
    void this.#wait(agent, ids, outputs, writers, stop, onExit).finally(() => {
      this.#settled.resolve(undefined);
    });
  }

  async #wait(
    agent: AgentApi,
    ids: { containerId: string; execId: string },
    outputs: Promise<void>[],
    writers: WriteStream[],
    stop: AbortController,
    onExit: (exit: ExitInfo) => Promise<void>,
  ): Promise<void> {
    let exitStatus: number;
    try {
      exitStatus = (await agent.waitProcess(ids)).status;
    } catch (e) {
      // The connection is gone: the VM died or is being torn down. The process is gone with it.
      if (!isKataError(e, Code.Unavailable))
        this.#log.warn("wait failed", { containerId: this.containerId, err: describeError(e) });
      exitStatus = lostExitStatus;
    }
    const drained = Promise.all(outputs).then(() => true);
    const timer = new Promise<boolean>((r) => {
      setTimeout(() => {
        r(false);
      }, drainAfterExitMs).unref();
    });
    if (!(await Promise.race([drained, timer])))
      this.#log.warn("output did not drain after exit", { containerId: this.containerId });
    stop.abort();
    this.#closeStdin?.();
    if (this.exit !== undefined) {
      // Already recorded (markStopped: torn down without the guest's word); keep that one.
      for (const w of writers) w.destroy();
      return;
    }
    // The exit is reported only once every byte is out of our buffers: a caller that exits on it
    // (kata-ts run) must not lose the tail of the output.
    await Promise.all(
      writers.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.once("error", () => {
              resolve();
            });
            w.end(() => {
              resolve();
            });
          }),
      ),
    );
    const exit = { exitStatus, exitedAt: new Date() };
    this.status = "stopped";
    this.exit = exit;
    await onExit(exit).catch((e: unknown) => {
      this.#log.warn("exit handling failed", { containerId: this.containerId, err: describeError(e) });
    });
    this.#exited.resolve(exit);
  }

  /** Closes the process's stdin (CloseIO): the copier stops and the guest sees end of input. */
  closeStdin(): void {
    this.#closeStdin?.();
  }
}
