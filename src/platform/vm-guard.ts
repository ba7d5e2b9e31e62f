// The host side of native/kata-ts-vmguard (docs/factory.md#vm-cache): a cached VM's QEMU runs under a
// guard that kills it when its owner's "lifeline" (a socketpair end the owner holds) closes, so owning
// a VM is holding a descriptor. The cache server owns the VMs it booted; a sandbox service that takes
// one hands the guard a lifeline of its own (SCM_RIGHTS, by the helper's `adopt`), and from then on
// the VM dies with that service, whoever started it.

import type { Duplex } from "node:stream";
import { abortError, deadline } from "../base/async.js";
import { Code, KataError, withSuppressed } from "../base/errors.js";
import type { Child, ExitStatus, ProcessRunner } from "./process.js";

/** What the guard says on a lifeline (native/kata-ts-vmguard.c): one line each. */
export type GuardMessage =
  | { readonly kind: "pid"; readonly pid: number }
  | { readonly kind: "exited"; readonly code: number }
  | { readonly kind: "adopted" };

/** How long a guard may take to kill QEMU and exit once its lifeline closed. */
const killGraceMs = 3000;
/** Lines longer than this are not the guard's. */
const maxLineBytes = 64;

/** Splits the guard's stream into messages; throws on anything it does not say. */
export class GuardDecoder {
  #buf = "";

  push(chunk: string): GuardMessage[] {
    this.#buf += chunk;
    const out: GuardMessage[] = [];
    for (;;) {
      const nl = this.#buf.indexOf("\n");
      if (nl < 0) break;
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + 1);
      out.push(parseGuardLine(line));
    }
    if (this.#buf.length > maxLineBytes) throw new KataError(Code.Internal, "vm guard: line too long");
    return out;
  }
}

export function parseGuardLine(line: string): GuardMessage {
  const m = /^([PXA])(?: (\d{1,10}))?$/.exec(line);
  const n = m?.[2] === undefined ? undefined : Number(m[2]);
  if (m?.[1] === "P" && n !== undefined && n > 0) return { kind: "pid", pid: n };
  if (m?.[1] === "X" && n !== undefined && n <= 255) return { kind: "exited", code: n };
  if (m?.[1] === "A" && n === undefined) return { kind: "adopted" };
  throw new KataError(Code.Internal, `vm guard: unexpected message ${JSON.stringify(line.slice(0, maxLineBytes))}`);
}

/** How an exit code the guard reports reads as an ExitStatus (128+N: killed by signal N). */
function exitStatusOf(code: number | undefined): ExitStatus {
  if (code === undefined) return { code: null, signal: "SIGKILL" };
  if (code > 128 && code - 128 === 9) return { code: null, signal: "SIGKILL" };
  return { code, signal: null };
}

/**
 * The owner's end of a guard's lifeline. As a Child (what QemuVm holds): `pid` is QEMU's, `exited`
 * resolves when QEMU exited or the guard is gone, and `kill()` of any signal lets go of the lifeline,
 * which makes the guard SIGKILL QEMU.
 */
export class Lifeline implements Child {
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  /** Resolves once another owner took the VM (the guard said "A"): this end then means nothing. */
  readonly adopted: Promise<void>;
  readonly stdin = null;
  readonly stdout = null;
  readonly stderr = null;
  readonly stdio = [];
  readonly #socket: Duplex;

  private constructor(socket: Duplex, pid: number, rest: GuardDecoder, early: GuardMessage[]) {
    this.#socket = socket;
    this.pid = pid;
    let exitCode: number | undefined;
    let adopted = (): void => {};
    this.adopted = new Promise((resolve) => {
      adopted = resolve;
    });
    const take = (msgs: GuardMessage[]): void => {
      for (const m of msgs) {
        if (m.kind === "exited") exitCode = m.code;
        if (m.kind === "adopted") adopted();
      }
    };
    take(early);
    this.exited = new Promise((resolve) => {
      socket.on("data", (d: Buffer) => {
        try {
          take(rest.push(d.toString("latin1")));
        } catch {
          socket.destroy();
        }
      });
      socket.once("close", () => {
        resolve(exitStatusOf(exitCode));
      });
      socket.on("error", () => {
        // 'close' follows; the guard reads our end's close as "kill the VM".
      });
    });
  }

  /** Waits for the guard's "P <pid>" on `socket`; DEADLINE_EXCEEDED or UNAVAILABLE when it does not come. */
  static async from(socket: Duplex, signal: AbortSignal, what: string): Promise<Lifeline> {
    const decoder = new GuardDecoder();
    return new Promise<Lifeline>((resolve, reject) => {
      const early: GuardMessage[] = [];
      const finish = (e?: Error, pid?: number): void => {
        socket.off("data", onData);
        socket.off("close", onClose);
        signal.removeEventListener("abort", onAbort);
        if (e !== undefined || pid === undefined) {
          socket.destroy();
          reject(e ?? new KataError(Code.Internal, `${what}: no pid`));
          return;
        }
        resolve(new Lifeline(socket, pid, decoder, early));
      };
      const onData = (d: Buffer): void => {
        let msgs: GuardMessage[];
        try {
          msgs = decoder.push(d.toString("latin1"));
        } catch (e) {
          finish(e as Error);
          return;
        }
        const at = msgs.findIndex((m) => m.kind === "pid");
        if (at < 0) {
          early.push(...msgs);
          return;
        }
        early.push(...msgs.slice(at + 1));
        // CAST: findIndex found a pid message there.
        finish(undefined, (msgs[at] as { pid: number }).pid);
      };
      const onClose = (): void => {
        finish(new KataError(Code.Unavailable, `${what}: the VM guard closed its lifeline (the VM is gone)`));
      };
      const onAbort = (): void => {
        finish(abortError(signal, what));
      };
      socket.on("data", onData);
      socket.once("close", onClose);
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Lets go of the VM: half-closes the lifeline, so the guard SIGKILLs QEMU, reaps it and exits, and
   * `exited` resolves once it did (destroyed outright if the guard does not close within killGraceMs).
   */
  kill(): void {
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), killGraceMs).unref();
  }

  unref(): void {
    // The lifeline is what keeps the VM: it must keep this process's event loop too.
  }
}

/** The guard's argv prefix for `argv`: `kata-ts-vmguard run CONTROL STDERR -- argv`. */
export function guardArgv(
  helper: string,
  controlSocket: string,
  stderrFile: string,
  argv: readonly string[],
): string[] {
  return [helper, "run", controlSocket, stderrFile, "--", ...argv];
}

/**
 * Takes over the VM whose guard listens on `controlSocket`: hands it a new lifeline and returns this
 * process's end once the guard confirmed (its "P <pid>"). The previous owner is told and let go.
 */
export async function adoptGuardedVm(
  runner: ProcessRunner,
  helper: string,
  controlSocket: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Lifeline> {
  const d = deadline(timeoutMs, signal);
  let child: Child | undefined;
  try {
    child = await runner.spawn(helper, ["adopt", controlSocket], { stdio: ["ignore", "ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr?.on("data", (b: Buffer) => {
      err = (err + b.toString("utf8")).slice(-512);
    });
    const end = child.stdio[3] as Duplex | null | undefined;
    if (end === null || end === undefined) throw new KataError(Code.Internal, "vm guard adopt: no lifeline");
    const sent = child.exited.then((s) => {
      if (s.code !== 0) throw new KataError(Code.Unavailable, `hand the VM over: ${err.trim() || "helper failed"}`);
    });
    const taking = Lifeline.from(end, d.signal, "take over the cached VM");
    // A helper that failed (no guard listening) must not leave us waiting for the deadline.
    try {
      await Promise.race([taking, sent.then(() => taking)]);
    } catch (e) {
      end.destroy();
      child.kill("SIGKILL");
      // The helper's own error says more than our end closing (its exit closes the only other copy).
      const first = await sent.then(
        () => e,
        (helperErr: unknown) => helperErr,
      );
      const l = await taking.catch((e2: unknown) => {
        throw first === e2 ? first : withSuppressed(first, [e2]);
      });
      l.kill();
      throw first;
    }
    await sent;
    return await taking;
  } catch (e) {
    child?.kill("SIGKILL");
    throw e;
  } finally {
    d.clear();
  }
}
