// `kata-ts run`: one sandbox holding one container, in the foreground. Its stdio is the caller's, its
// exit code becomes the caller's, and the VM and every host resource go away when it ends.

import type { Readable, Writable } from "node:stream";
import { constants } from "node:os";
import { delay } from "../base/async.js";
import { Code, KataError, describeError, wrap } from "../base/errors.js";
import type { Bundle } from "../oci/bundle.js";
import { pumpInput, pumpOutput } from "./io.js";
import { Sandbox, type SandboxConfig, type SandboxDeps, type Timings } from "./sandbox.js";

export interface RunOptions {
  readonly sandbox: SandboxConfig;
  readonly containerId: string;
  readonly bundle: Bundle;
  readonly stdin: Readable | null;
  readonly stdout: Writable;
  readonly stderr: Writable;
}

export interface RunResult {
  readonly exitCode: number;
  /** Milliseconds from the start of the run to each phase. */
  readonly timings: Timings;
}

/** After the process exits, how long its output may take to drain. */
const drainAfterExitMs = 10_000;

export class ContainerRun {
  readonly done: Promise<RunResult>;
  readonly #abort = new AbortController();
  readonly #deps: SandboxDeps;
  #sandbox: Sandbox | undefined;
  #started = false;
  #containerId = "";

  constructor(deps: SandboxDeps, opts: RunOptions) {
    this.#deps = deps;
    this.done = this.#run(opts);
  }

  /** Forwards a signal to the container (runc run does the same); before it started, cancels the run. */
  async signal(signal: NodeJS.Signals): Promise<void> {
    const sandbox = this.#sandbox;
    if (sandbox === undefined || !this.#started) {
      this.#abort.abort(new KataError(Code.Cancelled, `run interrupted by ${signal}`));
      return;
    }
    await sandbox.agent.signalProcess(
      { containerId: this.#containerId, execId: "", signal: constants.signals[signal] },
      { timeoutMs: 5000 },
    );
  }

  /** Stops waiting: the sandbox is torn down and `done` settles. */
  abort(reason: string): void {
    this.#abort.abort(new KataError(Code.Cancelled, reason));
  }

  async #run(opts: RunOptions): Promise<RunResult> {
    const signal = this.#abort.signal;
    const t0 = this.#deps.now();
    const id = opts.containerId;
    this.#containerId = id;
    const sandbox = await Sandbox.create(this.#deps, opts.sandbox, signal);
    this.#sandbox = sandbox;
    const timings: Timings = { ...sandbox.timings };
    const mark = (phase: string): void => {
      timings[phase] = this.#deps.now() - t0;
    };
    let result: RunResult | undefined;
    let failure: unknown;
    try {
      await sandbox.createContainer(id, opts.bundle, signal);
      mark("containerCreated");
      const ids = { containerId: id, execId: "" };
      await sandbox.startContainer(id, signal);
      this.#started = true;
      mark("containerStarted");
      const outputs = Promise.all([
        pumpOutput(sandbox.agent, "stdout", ids, opts.stdout, signal, () => {
          timings["firstOutput"] ??= this.#deps.now() - t0;
        }),
        pumpOutput(sandbox.agent, "stderr", ids, opts.stderr, signal, () => {
          timings["firstOutput"] ??= this.#deps.now() - t0;
        }),
      ]);
      outputs.catch(() => undefined);
      if (opts.stdin !== null) {
        pumpInput(sandbox.agent, ids, opts.stdin, signal).catch((e: unknown) => {
          this.#deps.logger.warn("stdin forwarding stopped", { containerId: id, err: describeError(e) });
        });
      }
      const { status } = await sandbox.agent.waitProcess(ids, { signal });
      mark("exited");
      const drained = await Promise.race([outputs.then(() => true), delay(drainAfterExitMs, signal).then(() => false)]);
      if (!drained) this.#deps.logger.warn("container output did not drain after exit", { containerId: id });
      result = { exitCode: status, timings };
    } catch (e) {
      failure = wrap(e, `run container ${id}`);
    } finally {
      opts.stdin?.destroy();
      try {
        await sandbox.destroy();
        mark("destroyed");
      } catch (e) {
        failure ??= e;
      }
    }
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- failure holds a caught error, rethrown as is
    if (failure !== undefined) throw failure;
    // CAST: result is set whenever no failure was recorded.
    return result as RunResult;
  }
}
