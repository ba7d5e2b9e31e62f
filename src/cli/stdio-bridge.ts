// How the caller's stdio reaches a container. The service opens stdio by path (containerd passes fifo
// paths). A pipe, file, tty or /dev/null of the caller can be reopened by the service as
// /proc/<pid>/fd/N; a unix socket cannot (ENXIO), so for those the CLI makes fifos and copies between
// them and its own fds: in this process when it stays attached (run, exec), or in a small relay
// process that outlives it (create).

import { closeSync, constants as fsc, fstatSync, open, openSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { Code, KataError, errnoOf } from "../base/errors.js";
import { describeExit, runChecked, type ProcessRunner } from "../platform/process.js";
import { installRoot } from "./runtime-context.js";

export type StdioName = "stdin" | "stdout" | "stderr";
export interface StdioPathsOut {
  stdin: string;
  stdout: string;
  stderr: string;
}

/** "" when the fd is closed, "socket" when it cannot be reopened by path, else the /proc path. */
export function classifyFd(fd: number, pid = process.pid): string {
  try {
    return fstatSync(fd).isSocket() ? "socket" : `/proc/${pid}/fd/${fd}`;
  } catch {
    return "";
  }
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

/**
 * Stdio paths for a new container process. `attached`: this process copies socket stdio itself until
 * `done`; `detached`: a relay process does it, so this one may exit.
 */
export async function prepareStdio(
  runner: ProcessRunner,
  fifoRoot: string,
  mode: "attached" | "detached",
): Promise<PreparedStdio> {
  const kinds = { stdin: classifyFd(0), stdout: classifyFd(1), stderr: classifyFd(2) };
  const relayed = (Object.keys(kinds) as StdioName[]).filter((n) => kinds[n] === "socket");
  if (relayed.length === 0) {
    return { paths: kinds, done: Promise.resolve(), cleanup: () => Promise.resolve(), abort: () => Promise.resolve() };
  }
  const { dir, fifos } = await makeFifos(runner, fifoRoot, relayed);
  const paths = { ...kinds, ...fifos };
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  if (mode === "attached") {
    const pump = pumpFifos(fifos, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
    const close = async (): Promise<void> => {
      pump.close();
      await cleanup();
    };
    return { paths, done: pump.done, cleanup: close, abort: close };
  }
  const relayPid = await startRelay(runner, fifos, dir);
  return {
    paths,
    done: Promise.resolve(),
    cleanup: () => Promise.resolve(),
    abort: async () => {
      try {
        process.kill(relayPid, "SIGKILL");
      } catch (e) {
        // ESRCH: the relay is already gone.
        if (errnoOf(e) !== "ESRCH") throw e;
      }
      await cleanup();
    },
  };
}

/** A relay process holding our socket fds: it copies until the container's outputs end. */
async function startRelay(
  runner: ProcessRunner,
  fifos: Partial<Record<StdioName, string>>,
  dir: string,
): Promise<number> {
  const args = [path.join(installRoot, "dist/src/cli/relay-main.js"), dir, ...Object.keys(fifos)];
  const child = await runner.spawn(process.execPath, args, {
    detached: true,
    stdio: [
      fifos.stdin !== undefined ? "inherit" : "ignore",
      fifos.stdout !== undefined ? "inherit" : "ignore",
      fifos.stderr !== undefined ? "inherit" : "ignore",
      "pipe",
    ],
  });
  const ready = child.stdio[3];
  if (ready === null || ready === undefined) throw new KataError(Code.Internal, "stdio relay: no ready pipe");
  return new Promise<number>((resolve, reject) => {
    ready.once("data", () => {
      ready.destroy();
      child.unref();
      resolve(child.pid);
    });
    void child.exited.then((status) => {
      reject(new KataError(Code.Internal, `stdio relay ended (${describeExit(status)}) before it was ready`));
    });
  });
}

/**
 * stdio for a terminal container created with --console-socket (OCI): the pty helper sends a pty
 * master to the socket and copies between its slave and two fifos the service opens.
 */
export async function prepareConsole(
  runner: ProcessRunner,
  fifoRoot: string,
  consoleSocket: string,
): Promise<PreparedStdio> {
  const { dir, fifos } = await makeFifos(runner, fifoRoot, ["stdin", "stdout"]);
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  // CAST: makeFifos made both.
  const [stdin, stdout] = [fifos.stdin as string, fifos.stdout as string];
  const helper = path.join(installRoot, "dist/native/kata-ts-tty");
  let copier: number;
  try {
    const r = await runChecked(runner, helper, ["console", consoleSocket, stdin, stdout]);
    copier = Number(r.stdout.trim());
  } catch (e) {
    await cleanup();
    throw e;
  }
  return {
    paths: { stdin, stdout, stderr: "" },
    done: Promise.resolve(),
    cleanup: () => Promise.resolve(),
    abort: async () => {
      try {
        process.kill(copier, "SIGKILL");
      } catch (e) {
        // ESRCH: the copier is already gone.
        if (errnoOf(e) !== "ESRCH") throw e;
      }
      await cleanup();
    },
  };
}
