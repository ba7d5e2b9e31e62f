// The host process that stands in for one container process (Kata 1.x's kata-shim): callers of the OCI
// CLI (conmon, podman, scripts) take the pid `create --pid-file` and `exec --pid-file` give them for the
// container's process, wait for it, read its exit status and send it signals. A process in a VM has no
// host pid, so relay-main.ts is that process: it inherits the caller's stdio and copies the container's
// through it, waits for the process in the guest (the service's Wait), exits with its status, and
// forwards every signal it can catch (the service's Kill). This file: its arguments and rules (pure),
// and how the CLI starts it.

import { constants } from "node:os";
import type { Duplex } from "node:stream";
import path from "node:path";
import { Code, KataError } from "../base/errors.js";
import { describeExit, type ProcessRunner } from "../platform/process.js";
import { installRoot } from "./paths.js";

export type StdioName = "stdin" | "stdout" | "stderr";

/** What the stand-in needs to find its process and relay its stdio; passed as one JSON argument. */
export interface StandInArgs {
  /** The sandbox service's socket. */
  readonly socket: string;
  readonly sandboxId: string;
  readonly id: string;
  /** "" for the container's own process. */
  readonly execId: string;
  /** The directory of the fifos it relays (removed when it ends); "" when it relays none. */
  readonly dir: string;
  /** Which of its stdio it relays through `dir`'s fifos of the same names. */
  readonly relay: readonly StdioName[];
  /** A console copier (kata-ts-tty console) whose end it waits for before it exits; 0 for none. */
  readonly copierPid: number;
  /** Whether the copier writes the console's sizes to `dir`/winsize, for the stand-in to pass on (ResizePty). */
  readonly winsize?: boolean;
  /** Where it appends a line when it cannot do its job ("" for nowhere: its stderr is the container's). */
  readonly log: string;
}

const maxArgLength = 16 * 1024;

/** Parses the JSON argument (written by startStandIn; bounded anyway, it names host paths). */
export function parseStandInArgs(text: string | undefined): StandInArgs {
  if (text === undefined || text.length > maxArgLength) {
    throw new KataError(Code.InvalidArgument, "stand-in: expected one JSON argument of at most 16 KiB");
  }
  const v = JSON.parse(text) as Partial<Record<keyof StandInArgs, unknown>>;
  const str = (k: keyof StandInArgs): string => {
    const s = v[k];
    if (typeof s !== "string") throw new KataError(Code.InvalidArgument, `stand-in: ${k} must be a string`);
    return s;
  };
  const relay = v.relay;
  if (!Array.isArray(relay) || !relay.every((n) => n === "stdin" || n === "stdout" || n === "stderr")) {
    throw new KataError(Code.InvalidArgument, "stand-in: relay must list stdin, stdout or stderr");
  }
  const copierPid = v.copierPid;
  if (typeof copierPid !== "number" || !Number.isSafeInteger(copierPid) || copierPid < 0) {
    throw new KataError(Code.InvalidArgument, "stand-in: copierPid must be a pid or 0");
  }
  if (v.winsize !== undefined && typeof v.winsize !== "boolean") {
    throw new KataError(Code.InvalidArgument, "stand-in: winsize must be a boolean");
  }
  return {
    ...(v.winsize === true ? { winsize: true } : {}),
    socket: str("socket"),
    sandboxId: str("sandboxId"),
    id: str("id"),
    execId: str("execId"),
    dir: str("dir"),
    relay: relay as StdioName[],
    copierPid,
    log: str("log"),
  };
}

/**
 * The signals the stand-in forwards to its process: every one a process can catch and that means
 * something to the process rather than to the stand-in. Not SIGCHLD, SIGPIPE, SIGURG, SIGPROF (noise
 * about the stand-in itself), SIGWINCH (a window size, not a signal for the process: a terminal's size
 * follows ResizePty), SIGKILL and SIGSTOP (nobody can catch them: `kata-ts kill` reaches the process).
 */
export const forwardedSignals: readonly NodeJS.Signals[] = [
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGTERM",
  "SIGUSR1",
  "SIGUSR2",
  "SIGALRM",
  "SIGCONT",
  "SIGTSTP",
  "SIGTTIN",
  "SIGTTOU",
  "SIGVTALRM",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGSYS",
  "SIGTRAP",
  "SIGABRT",
];

/** A terminal size as the console copier reports it. */
export interface WinSize {
  readonly rows: number;
  readonly cols: number;
}

/** The longest unfinished line kept: "65535 65535" and then some. */
const maxWinsizeLine = 32;

/**
 * Splits the copier's "ROWS COLS" lines off `text`: the sizes, and the unfinished rest to keep for the
 * next read. Lines that are not two numbers in 1..65535 (a pty's range) are skipped, and an overlong
 * rest is dropped: the stream is ours, but a bad line must not stop the next resizes.
 */
export function takeWinsizes(text: string): { sizes: WinSize[]; rest: string } {
  const lines = text.split("\n");
  const last = lines.pop() ?? "";
  const sizes: WinSize[] = [];
  for (const line of lines) {
    const m = /^(\d{1,5}) (\d{1,5})$/.exec(line.trim());
    if (m === null) continue;
    const [rows, cols] = [Number(m[1]), Number(m[2])];
    if (rows >= 1 && rows <= 65535 && cols >= 1 && cols <= 65535) sizes.push({ rows, cols });
  }
  return { sizes, rest: last.length > maxWinsizeLine ? "" : last };
}

/** The signal number the service's Kill takes for a signal the stand-in caught. */
export function signalNumber(sig: NodeJS.Signals): number {
  return constants.signals[sig];
}

/**
 * The stand-in's exit code for the process's exit status. The guest reports a process killed by signal
 * S as 128+S (as runc's `run` and a shell do), which is also what conmon makes of a wait status either
 * way: one exit code carries both. Anything out of range (a lost VM is 255) is 255.
 */
export function exitCodeOf(exitStatus: number): number {
  return Number.isInteger(exitStatus) && exitStatus >= 0 && exitStatus <= 255 ? exitStatus : 255;
}

export interface StandIn {
  readonly pid: number;
  /** The process exists in the service: the stand-in may wait for it. Lets this process exit. */
  commit(): void;
  /** The process was not made: the stand-in goes (the caller removes the fifos). */
  abort(): void;
}

/**
 * Starts the stand-in, in a session of its own (a terminal's signals are for its caller), holding the
 * caller's stdio named in `relay` and no other descriptor of ours (the launcher closes them). Resolves
 * once its fifo ends are open, so the service's opens do not block.
 */
export async function startStandIn(runner: ProcessRunner, args: StandInArgs): Promise<StandIn> {
  const main = path.join(installRoot, "dist/src/cli/relay-main.js");
  const held = (n: StdioName): "inherit" | "ignore" => (args.relay.includes(n) ? "inherit" : "ignore");
  const child = await runner.spawn(process.execPath, [main, JSON.stringify(args)], {
    detached: true,
    stdio: [held("stdin"), held("stdout"), held("stderr"), "pipe"],
  });
  const control = child.stdio[3];
  if (control === null || control === undefined) throw new KataError(Code.Internal, "stand-in: no control pipe");
  await new Promise<void>((resolve, reject) => {
    control.once("data", () => {
      resolve();
    });
    void child.exited.then((status) => {
      reject(new KataError(Code.Internal, `the process stand-in ended (${describeExit(status)}) before it was ready`));
    });
  });
  // CAST: a "pipe" entry past stderr is two-way (a socketpair's end; the runner keeps it so).
  const duplex = control as Duplex;
  return {
    pid: child.pid,
    commit() {
      // The stand-in closes its end once it read this: our end then closes and lets this process exit.
      duplex.end("go\n");
      duplex.resume();
      child.unref();
    },
    abort() {
      // Closing the control pipe without "go": the stand-in removes nothing and exits.
      child.kill("SIGKILL");
      control.destroy();
      child.unref();
    },
  };
}

export { recordStandIn, standInPid, standInRecord } from "./stand-in-record.js";
