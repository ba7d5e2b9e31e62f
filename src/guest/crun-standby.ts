// One crun launcher started ahead of need (`kata-ts-sealed-exec --standby`, stdio pipes connected), so a
// container start or an exec does not fork the agent on its critical path: Node forks the whole agent
// (~50 MB) for every child, 15-40 ms under TCG when idle and up to 0.2 s under load. The launcher waits
// for its arguments on descriptor 3 and then execs crun in place: the pid, the pipes, the exit status and
// the signals are crun's, exactly as with a direct spawn. A new one is started once no crun command has
// been in flight for `afterMs`: the guest may have one vCPU, and a fork while crun works would only
// move the cost, not hide it; between a kubelet's calls the guest is idle.

import { Writable } from "node:stream";
import type { Child, ProcessRunner } from "../platform/process.js";

interface Ready {
  readonly child: Child;
  alive: boolean;
}

/** What descriptor 3 carries at most (the launcher's own limit is 256 KiB). */
const maxArgsBytes = 128 * 1024;

export class Standby {
  readonly #runner: ProcessRunner;
  readonly #launcher: string;
  readonly #afterMs: number;
  #ready: Promise<Ready | undefined> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #inflight = 0;

  constructor(runner: ProcessRunner, launcher: string, afterMs: number) {
    this.#runner = runner;
    this.#launcher = launcher;
    this.#afterMs = afterMs;
    this.#schedule();
  }

  /**
   * Hands `argv` (the program, then its arguments) to the launcher kept ready and returns it as the
   * program's child; undefined when none is ready or it is gone (the caller spawns as usual).
   */
  async take(argv: readonly string[]): Promise<Child | undefined> {
    const pending = this.#ready;
    this.#ready = undefined;
    const ready = await pending;
    const ctl = ready?.child.stdio[3];
    if (ready === undefined || !ready.alive || !(ctl instanceof Writable) || ctl.writableEnded) return undefined;
    const args = Buffer.from(argv.map((a) => `${a}\0`).join(""));
    if (args.length > maxArgsBytes || argv.some((a) => a.includes("\0"))) {
      ctl.end();
      return undefined;
    }
    // A launcher that died just now makes this write fail (EPIPE, ignored): its exit is then the child's.
    ctl.end(args);
    return ready.child;
  }

  /** A crun command starts: no new launcher is started until it is done (idle()). */
  busy(): void {
    this.#inflight++;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** A crun command is done with the CPU (finished, or its process started); see busy(). */
  idle(): void {
    this.#inflight = Math.max(0, this.#inflight - 1);
    this.#schedule();
  }

  /** Ends the launcher kept ready (it exits 0 on EOF with no arguments) and starts no other. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const ready = await this.#ready;
    this.#ready = undefined;
    const ctl = ready?.child.stdio[3];
    if (ready === undefined || !(ctl instanceof Writable)) return;
    ctl.end();
    await ready.child.exited;
  }

  #schedule(): void {
    if (this.#closed || this.#inflight > 0 || this.#timer !== undefined || this.#ready !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#closed || this.#inflight > 0 || this.#ready !== undefined) return;
      this.#ready = this.#start();
    }, this.#afterMs);
    this.#timer.unref();
  }

  async #start(): Promise<Ready | undefined> {
    let child: Child;
    try {
      child = await this.#runner.spawn(this.#launcher, ["--standby"], { stdio: ["pipe", "pipe", "pipe", "pipe"] });
    } catch {
      return undefined; // the direct spawn that follows reports why (no launcher, no memory)
    }
    const ready: Ready = { child, alive: true };
    void child.exited.then(() => {
      ready.alive = false;
    });
    child.stdio[3]?.on("error", () => undefined);
    return ready;
  }
}
