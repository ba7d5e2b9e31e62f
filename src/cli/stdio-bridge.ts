// How the caller's stdio reaches a container. The service opens stdio by path (containerd passes fifo
// paths). A terminal or another character device (/dev/null) of the caller is reopened by the service as
// /proc/<pid>/fd/N: it has no offset, and it is the same device. Anything else goes through fifos the
// CLI makes and copies through the caller's own descriptor: a unix socket cannot be reopened (ENXIO), a
// reopened file starts at offset 0 without O_APPEND (`( echo A; kata-ts run ...; echo B ) > f` would
// overwrite A), and a pipe's reader must see its end only once the process ended. The copy is done in
// this process when it stays attached (run, exec), or by the process stand-in that outlives it
// (create, exec -d: see stand-in.ts).

import { closeSync, constants as fsc, fstatSync, open, openSync, type Stats } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { errnoOf } from "../base/errors.js";
import { runChecked, type ProcessRunner } from "../platform/process.js";
import { installRoot } from "./runtime-context.js";
import { startStandIn, type StandInArgs, type StdioName } from "./stand-in.js";

export type { StdioName };
export interface StdioPathsOut {
  stdin: string;
  stdout: string;
  stderr: string;
}

/** Whether a descriptor of this kind is copied through fifos rather than reopened by the service. */
export function relaysThrough(st: Pick<Stats, "isCharacterDevice">): boolean {
  return !st.isCharacterDevice();
}

/** "" when the fd is closed, "relay" when it is copied through a fifo (relaysThrough), else the /proc path. */
export function classifyFd(fd: number, pid = process.pid): string {
  let st: Stats;
  try {
    st = fstatSync(fd);
  } catch {
    return "";
  }
  return relaysThrough(st) ? "relay" : `/proc/${pid}/fd/${fd}`;
}

/** Reader end of an output fifo: quiet until the service opens its end, ends when it closes it. */
export function openFifoReader(p: string): net.Socket {
  const fd = openSync(p, fsc.O_RDONLY | fsc.O_NONBLOCK);
  return new net.Socket({ fd, readable: true, writable: false });
}

/**
 * Copies between fifos and streams; `done` resolves when both outputs ended. The stdin fifo is opened
 * for writing only once the service opened it for reading (a blocking open): closing a fifo nobody
 * reads yet would lose what was written and leave the service's later open waiting forever. `close`
 * releases that open if the service never came.
 */
export function pumpFifos(
  fifos: Partial<Record<StdioName, string>>,
  streams: { stdin: Readable; stdout: Writable; stderr: Writable },
): { done: Promise<void>; close(): void } {
  const outputs: Promise<void>[] = [];
  const readers: net.Socket[] = [];
  for (const which of ["stdout", "stderr"] as const) {
    const p = fifos[which];
    if (p === undefined) continue;
    const reader = openFifoReader(p);
    readers.push(reader);
    outputs.push(
      new Promise<void>((resolve) => {
        reader.on("end", resolve).on("error", () => {
          resolve();
        });
        reader.pipe(streams[which], { end: false });
      }),
    );
  }
  let stdinOpened = false;
  let releaseFd: number | undefined;
  const stdinFifo = fifos.stdin;
  if (stdinFifo !== undefined) {
    streams.stdin.pause();
    open(stdinFifo, fsc.O_WRONLY, (err, fd) => {
      stdinOpened = true;
      if (releaseFd !== undefined) {
        // close() released this open with a reader of its own: nobody else will read; let go.
        closeSync(releaseFd);
        if (err === null) closeSync(fd);
        return;
      }
      if (err !== null) return;
      const writer = new net.Socket({ fd, readable: false, writable: true });
      writer.on("error", () => undefined);
      streams.stdin.pipe(writer, { end: false });
      streams.stdin.once("end", () => {
        writer.end(() => {
          writer.destroy();
        });
      });
      streams.stdin.resume();
    });
  }
  return {
    done: Promise.all(outputs).then(() => undefined),
    close() {
      for (const r of readers) r.destroy();
      if (stdinFifo !== undefined && !stdinOpened && releaseFd === undefined) {
        // Be the reader the pending open waits for, and stay one until it has run (it may not even
        // have started yet), so it completes and the process can exit.
        try {
          releaseFd = openSync(stdinFifo, fsc.O_RDONLY | fsc.O_NONBLOCK);
        } catch {
          return;
        }
      }
    },
  };
}

export interface PreparedStdio {
  readonly paths: StdioPathsOut;
  /** Resolves when the relayed outputs ended (attached mode); at once otherwise. */
  readonly done: Promise<void>;
  /** Removes the fifos' directory (after the service opened them, or on failure). */
  cleanup(): Promise<void>;
  /** The container was not created: stop the relay and remove the fifos. */
  abort(): Promise<void>;
}

async function makeFifos(
  runner: ProcessRunner,
  fifoRoot: string,
  names: readonly StdioName[],
): Promise<{ dir: string; fifos: Partial<Record<StdioName, string>> }> {
  await mkdir(fifoRoot, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(path.join(fifoRoot, "io-"));
  const fifos: Partial<Record<StdioName, string>> = {};
  for (const n of names) fifos[n] = path.join(dir, n);
  await runChecked(runner, "mkfifo", ["-m", "0600", ...Object.values(fifos)]);
  return { dir, fifos };
}

/** Which process a stand-in stands in for (the rest of StandInArgs is the stdio's). */
export type StandInTarget = Pick<StandInArgs, "socket" | "sandboxId" | "id" | "execId" | "log">;

/** Stdio held by a process stand-in, which outlives this process. */
export interface DetachedStdio extends PreparedStdio {
  /** The stand-in's pid: the container process's pid for the caller (--pid-file, state). */
  readonly pid: number;
  /** The process exists: the stand-in waits for it from now on. */
  commit(): void;
}

function stdioKinds(): StdioPathsOut & Record<StdioName, string> {
  return { stdin: classifyFd(0), stdout: classifyFd(1), stderr: classifyFd(2) };
}

/** Stdio paths for a process this one stays attached to (run, exec): it copies until `done`. */
export async function prepareStdio(runner: ProcessRunner, fifoRoot: string): Promise<PreparedStdio> {
  const kinds = stdioKinds();
  const relayed = (Object.keys(kinds) as StdioName[]).filter((n) => kinds[n] === "relay");
  if (relayed.length === 0) {
    return { paths: kinds, done: Promise.resolve(), cleanup: () => Promise.resolve(), abort: () => Promise.resolve() };
  }
  const { dir, fifos } = await makeFifos(runner, fifoRoot, relayed);
  const paths = { ...kinds, ...fifos };
  const pump = pumpFifos(fifos, {
    get stdin() {
      return process.stdin;
    },
    stdout: process.stdout,
    stderr: process.stderr,
  });
  const close = async (): Promise<void> => {
    pump.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { paths, done: pump.done, cleanup: close, abort: close };
}

/**
 * Stdio for a process this one does not wait for (create, exec -d): a stand-in holds the caller's
 * descriptors and copies; it is the process's pid for the caller.
 */
export async function prepareStandIn(
  runner: ProcessRunner,
  fifoRoot: string,
  target: StandInTarget,
): Promise<DetachedStdio> {
  const kinds = stdioKinds();
  const relay = (Object.keys(kinds) as StdioName[]).filter((n) => kinds[n] === "relay");
  const made = relay.length === 0 ? undefined : await makeFifos(runner, fifoRoot, relay);
  const dir = made?.dir ?? "";
  const removeDir = (): Promise<void> => (dir === "" ? Promise.resolve() : rm(dir, { recursive: true, force: true }));
  let standIn;
  try {
    standIn = await startStandIn(runner, { ...target, dir, relay, copierPid: 0 });
  } catch (e) {
    await removeDir();
    throw e;
  }
  return detached({ ...kinds, ...made?.fifos }, standIn, removeDir);
}

function detached(
  paths: StdioPathsOut,
  standIn: { pid: number; commit(): void; abort(): void },
  removeDir: () => Promise<void>,
  more: () => void = () => undefined,
): DetachedStdio {
  return {
    paths,
    pid: standIn.pid,
    done: Promise.resolve(),
    // The stand-in removes the fifos when it ends.
    cleanup: () => Promise.resolve(),
    commit: () => {
      standIn.commit();
    },
    abort: async () => {
      standIn.abort();
      more();
      await removeDir();
    },
  };
}

/**
 * stdio for a terminal process with --console-socket (OCI): the pty helper sends a pty master to the
 * socket and copies between its slave and two fifos the service opens; a stand-in with no stdio of its
 * own waits for the process (and then for the copier to pass the last output on).
 */
export async function prepareConsole(
  runner: ProcessRunner,
  fifoRoot: string,
  consoleSocket: string,
  target: StandInTarget,
): Promise<DetachedStdio> {
  const { dir, fifos } = await makeFifos(runner, fifoRoot, ["stdin", "stdout"]);
  const removeDir = (): Promise<void> => rm(dir, { recursive: true, force: true });
  // CAST: makeFifos made both.
  const [stdin, stdout] = [fifos.stdin as string, fifos.stdout as string];
  // The copier's reports of the caller's resizes (TIOCSWINSZ on the master), which the stand-in passes on.
  const winsize = path.join(dir, "winsize");
  const helper = path.join(installRoot, "dist/native/kata-ts-tty");
  let copier: number;
  try {
    await runChecked(runner, "mkfifo", ["-m", "0600", winsize]);
    const r = await runChecked(runner, helper, ["console", consoleSocket, stdin, stdout, winsize]);
    copier = Number(r.stdout.trim());
  } catch (e) {
    await removeDir();
    throw e;
  }
  const killCopier = (): void => {
    try {
      process.kill(copier, "SIGKILL");
    } catch (e) {
      // ESRCH: the copier is already gone.
      if (errnoOf(e) !== "ESRCH") throw e;
    }
  };
  let standIn;
  try {
    // The copier's fifos are the stand-in's to remove when it ends.
    standIn = await startStandIn(runner, { ...target, dir, relay: [], copierPid: copier, winsize: true });
  } catch (e) {
    killCopier();
    await removeDir();
    throw e;
  }
  return detached({ stdin, stdout, stderr: "" }, standIn, removeDir, killCopier);
}
