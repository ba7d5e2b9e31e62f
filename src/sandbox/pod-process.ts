// One process of a pod as the host sees it (a container's init, or an exec): its status (through the
// transition table), where its stdio goes, and its exit status once it has one. Stdio paths are opened
// by the service itself: containerd's fifos, or /proc/<pid>/fd/N of the CLI that asked.

import type { WriteStream } from "node:fs";
import type { Readable } from "node:stream";
import { deferred, linkSignals, longLivedController, settlesWithin } from "../base/async.js";
import { Code, KataError, errnoOf, isKataError } from "../base/errors.js";
import { errField, type Logger } from "../base/log.js";
import type { AgentApi } from "../agent-client/agent-client.js";
import { pumpInput, pumpOutput } from "./io.js";
import { openReader, openWriter } from "./stdio-files.js";
import { StatusCell, type ContainerStatus, type ProcessKind } from "./status.js";

export interface StdioPaths {
  /** "" when the process has no such stream. */
  readonly stdin: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminal: boolean;
}

export interface ExitInfo {
  readonly exitStatus: number;
  readonly exitedAt: Date;
}

/** After the process exits, how long its output may take to arrive from the guest. */
const drainAfterExitMs = 10_000;
/** Then how long our buffers may take to reach a reader; a reader that stopped reading loses the rest. */
const flushAfterExitMs = 2000;
/** Exit status reported when the VM (and so the process) is gone without a status. */
export const lostExitStatus = 255;

export interface AttachOptions {
  /** Runs after the output drained, before waiters are released. */
  readonly onExit: (exit: ExitInfo) => Promise<void>;
  readonly onFirstOutput?: () => void;
  /** Aborts when the sandbox is lost: the process is then gone too (exit status lostExitStatus). */
  readonly lost?: AbortSignal;
}

export class PodProcess {
  readonly containerId: string;
  readonly execId: string;
  readonly stdio: StdioPaths;
  readonly cell: StatusCell;
  exit: ExitInfo | undefined;
  /** A terminal size asked for before the process started (a console-socket's first resize): applied at start. */
  pendingSize: { readonly width: number; readonly height: number } | undefined;
  readonly #exited = deferred<ExitInfo>();
  readonly #settled = deferred<undefined>();
  readonly #log: Logger;
  /** Aborted when the exit is recorded: the copiers stop, whatever they wait for. */
  readonly #stop = longLivedController();
  #closeStdin: (() => void) | undefined;
  #writers: Partial<Record<"stdout" | "stderr", WriteStream>> = {};
  #input: Readable | undefined;

  constructor(
    containerId: string,
    execId: string,
    stdio: StdioPaths,
    log: Logger,
    opts: { kind?: ProcessKind; initial?: ContainerStatus } = {},
  ) {
    this.containerId = containerId;
    this.execId = execId;
    this.stdio = stdio;
    this.#log = log;
    this.cell = new StatusCell(opts.kind ?? "container", execId, opts.initial ?? "created");
  }

  get status(): ContainerStatus {
    return this.cell.status;
  }

  get exited(): Promise<ExitInfo> {
    return this.#exited.promise;
  }

  /** Resolves once the process's copiers and waiter have finished (its stdio is closed then). */
  get settled(): Promise<void> {
    return this.#settled.promise;
  }

  /**
   * Records an exit that did not come from the guest (killed before it started, VM gone, teardown):
   * waiters are released at once and the copiers stop.
   */
  markStopped(exitStatus: number): void {
    if (this.exit !== undefined) return;
    this.#record(exitStatus, true);
    this.releaseStdio();
  }

  /**
   * Opens the stdio paths, at create time: a caller's /proc/<pid>/fd/N exists only while the caller
   * waits for the answer, and containerd expects its fifos opened by then too.
   */
  async open(): Promise<void> {
    let which: "stdin" | "stdout" | "stderr" = "stdout";
    try {
      for (which of ["stdout", "stderr"] as const) {
        const p = this.stdio[which];
        if (p !== "") this.#writers[which] = await openWriter(p);
      }
      which = "stdin";
      if (this.stdio.stdin !== "") this.#input = await openReader(this.stdio.stdin);
    } catch (e) {
      this.releaseStdio();
      const code = errnoOf(e) === "ENOENT" ? Code.NotFound : Code.InvalidArgument;
      throw new KataError(code, `open ${which} ${this.stdio[which]} of ${this.execId}`, { cause: e });
    }
  }

  /** Closes the stdio (a process that will never run, or one torn down). */
  releaseStdio(): void {
    this.#stop.abort();
    for (const w of Object.values(this.#writers)) w.destroy();
    this.#writers = {};
    this.#input?.destroy();
    this.#input = undefined;
  }

  /**
   * The process runs in the guest now (status: running): copies its stdio and waits for its exit.
   * Throws FAILED_PRECONDITION when its status does not allow a start.
   */
  attach(agent: AgentApi, opts: AttachOptions): void {
    this.cell.apply("start");
    const ids = { containerId: this.containerId, execId: this.execId === this.containerId ? "" : this.execId };
    const copy = linkSignals(this.#stop.signal, opts.lost);
    const outputs: Promise<void>[] = [];
    const writers: WriteStream[] = [];
    for (const which of ["stdout", "stderr"] as const) {
      const w = this.#writers[which];
      if (w === undefined) continue;
      writers.push(w);
      outputs.push(
        pumpOutput(agent, which, ids, w, copy.signal, opts.onFirstOutput).catch((e: unknown) => {
          if (!copy.signal.aborted) this.#log.warn(`${which} copy stopped`, { ...ids, err: errField(e) });
        }),
      );
    }
    const input = this.#input;
    if (input !== undefined) {
      this.#closeStdin = () => {
        input.destroy();
        void agent.closeStdin(ids, { timeoutMs: 5000 }).catch((e: unknown) => {
          this.#log.debug("close stdin in the guest", { ...ids, err: errField(e) });
        });
      };
      void pumpInput(agent, ids, input, copy.signal).catch((e: unknown) => {
        this.#log.warn("stdin copy stopped", { ...ids, err: errField(e) });
      });
    }
    void this.#wait(agent, ids, outputs, writers, opts)
      .catch((e: unknown) => {
        this.#log.error("process exit handling failed", { ...ids, err: errField(e) });
      })
      .finally(() => {
        copy.clear();
        this.#settled.resolve(undefined);
      });
  }

  async #wait(
    agent: AgentApi,
    ids: { containerId: string; execId: string },
    outputs: Promise<void>[],
    writers: WriteStream[],
    opts: AttachOptions,
  ): Promise<void> {
    let exitStatus: number;
    const waiting = linkSignals(this.#stop.signal, opts.lost);
    try {
      exitStatus = (await agent.waitProcess(ids, { signal: waiting.signal })).status;
    } catch (e) {
      // The VM died, the sandbox is lost or torn down: the process is gone with it.
      if (!isKataError(e, Code.Unavailable) && !waiting.signal.aborted) {
        this.#log.warn("wait failed", { ...ids, err: errField(e) });
      }
      exitStatus = lostExitStatus;
    } finally {
      waiting.clear();
    }
    if (this.exit !== undefined) return; // recorded already by markStopped
    if (!(await settlesWithin(Promise.all(outputs), drainAfterExitMs))) {
      this.#log.warn("output did not drain after exit", ids);
    }
    this.#stop.abort();
    this.#closeStdin?.();
    // The exit is reported once every byte is out of our buffers (a caller that exits on it, like
    // kata-ts run, must not lose the tail), unless the reader stopped reading: then the rest is dropped.
    if (!(await settlesWithin(Promise.all(writers.map(endWriter)), flushAfterExitMs))) {
      this.#log.warn("output dropped: its reader stopped reading", ids);
      for (const w of writers) w.destroy();
    }
    // markStopped may have recorded an exit while this waited (teardown).
    if (this.#hasExit()) return;
    const exit = this.#record(exitStatus, false);
    await opts.onExit(exit).catch((e: unknown) => {
      this.#log.warn("exit handling failed", { ...ids, err: errField(e) });
    });
    this.#exited.resolve(exit);
  }

  #hasExit(): boolean {
    return this.exit !== undefined;
  }

  /** Records the exit (status: stopped); waiters are released now, or by the caller after onExit. */
  #record(exitStatus: number, release: boolean): ExitInfo {
    this.cell.tryApply("exit");
    const exit = { exitStatus, exitedAt: new Date() };
    this.exit = exit;
    this.#stop.abort();
    if (release) this.#exited.resolve(exit);
    return exit;
  }

  /** Closes the process's stdin (CloseIO): the copier stops and the guest sees end of input. */
  closeStdin(): void {
    this.#closeStdin?.();
  }
}

function endWriter(w: WriteStream): Promise<void> {
  return new Promise<void>((resolve) => {
    w.once("error", () => {
      resolve();
    });
    w.end(() => {
      resolve();
    });
  });
}
