// The process that stands in on the host for one container process (see stand-in.ts): started by
// `create` and `exec -d`, it holds the caller's stdio and copies the container's through it (so a
// file's offset moves, an append appends, a pipe reader sees its end when the process ends), waits for
// the process in the guest, forwards the signals it receives, and exits with the process's status.
// Argv: one JSON StandInArgs. fd 3: the control pipe ("ready" out once the fifos are open; "go" in
// once the process exists, or an end without it when it was not made).

import { appendFile, rm } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describeError, ignoreErrno } from "../base/errors.js";
import { processExists } from "../platform/process.js";
import { connectTask, type TaskConnection } from "./service-client.js";
import {
  exitCodeOf,
  forwardedSignals,
  parseStandInArgs,
  signalNumber,
  takeWinsizes,
  type StdioName,
} from "./stand-in.js";
import { openFifoReader, pumpFifos } from "./stdio-bridge.js";

/** How long outputs may run on after the process exited (a daemon it left holding them). */
const drainMs = 5000;
/** How long a console copier may take to pass the last output on to the terminal. */
const copierMs = 5000;

const args = parseStandInArgs(process.argv[2]);
const what = args.execId === "" ? `container ${args.id}` : `exec ${args.execId} of container ${args.id}`;
const say = (msg: string): void => {
  if (args.log === "") return;
  // The log is best effort: the exit status is what the caller reads.
  appendFile(args.log, `${new Date().toISOString()} kata-ts stand-in ${process.pid} (${what}): ${msg}\n`).catch(
    ignoreErrno("ENOENT", "EACCES", "ENOSPC"),
  );
};

process.on("uncaughtException", (e) => {
  say(`failed: ${describeError(e)}`);
  process.exit(255);
});

const fifos: Partial<Record<StdioName, string>> = {};
for (const n of args.relay) fifos[n] = path.join(args.dir, n);
// Getters: process.stdin is made only when stdin is relayed (it would otherwise hold a descriptor we
// were not given).
const pump = pumpFifos(fifos, {
  get stdin() {
    return process.stdin;
  },
  stdout: process.stdout,
  stderr: process.stderr,
});

let conn: TaskConnection | undefined;
const pending: number[] = [];
for (const sig of forwardedSignals) {
  process.on(sig, () => {
    const signal = signalNumber(sig);
    if (conn === undefined) {
      pending.push(signal);
      return;
    }
    conn.task.kill({ id: args.id, execId: args.execId, signal, all: false }).catch((e: unknown) => {
      // The process may have exited meanwhile: its exit status is what we report.
      say(`forward ${sig}: ${describeError(e)}`);
    });
  });
}

const control = new net.Socket({ fd: 3, readable: true, writable: true });
control.write("ready\n");
const go = await new Promise<boolean>((resolve) => {
  let text = "";
  control.on("data", (d: Buffer) => {
    text += d.toString();
    if (text.includes("go\n")) resolve(true);
  });
  control.once("end", () => {
    resolve(text.includes("go\n"));
  });
  control.once("error", () => {
    resolve(false);
  });
});
control.destroy();

/**
 * Passes the console copier's size reports on to the process's terminal (ResizePty), in order. The copier
 * keeps the fifo open for writing, so lines written before this read are waiting in it.
 */
function forwardResizes(c: TaskConnection): void {
  const reader = openFifoReader(path.join(args.dir, "winsize"));
  let rest = "";
  let chain = Promise.resolve();
  reader.on("data", (d: Buffer) => {
    const taken = takeWinsizes(rest + d.toString());
    rest = taken.rest;
    for (const { rows, cols } of taken.sizes) {
      chain = chain.then(() =>
        c.task.resizePty({ id: args.id, execId: args.execId, width: cols, height: rows }).then(
          () => undefined,
          (e: unknown) => {
            say(`resize to ${rows}x${cols}: ${describeError(e)}`);
          },
        ),
      );
    }
  });
  reader.on("error", (e) => {
    say(`winsize: ${describeError(e)}`);
  });
  // The copier holds the fifo for the process's life: do not let it hold this process too.
  reader.unref();
}

async function finish(code: number): Promise<never> {
  // A stdin open the service never answered would keep a thread (and so the process) alive.
  pump.close();
  if (args.dir !== "") await rm(args.dir, { recursive: true, force: true });
  await conn?.close();
  process.exit(code);
}

if (!go) {
  // The process was not made (the CLI failed, or was killed): nothing to stand in for.
  say("not told the process exists: ending");
  await finish(1);
}

let status = 255;
try {
  conn = await connectTask(args.socket);
  const task = conn.task;
  for (const signal of pending.splice(0)) {
    await task.kill({ id: args.id, execId: args.execId, signal, all: false }).catch((e: unknown) => {
      say(`forward signal ${signal}: ${describeError(e)}`);
    });
  }
  if (args.winsize === true) forwardResizes(conn);
  status = (await task.wait({ id: args.id, execId: args.execId })).exitStatus;
  if (args.execId !== "") {
    // Nobody else deletes a detached exec: its record goes with its stand-in (runc keeps none).
    await task.delete({ id: args.id, execId: args.execId }).catch((e: unknown) => {
      say(`delete the exec: ${describeError(e)}`);
    });
  }
} catch (e) {
  // The service or its VM is gone: the process is too (the sandbox is lost, as its status 255 says).
  say(`wait: ${describeError(e)}`);
}
const drained = await Promise.race([pump.done.then(() => true), sleep(drainMs, false)]);
if (!drained) say(`outputs still open ${drainMs} ms after the process exited: left`);
if (args.copierPid !== 0) {
  for (let t = 0; t < copierMs && processExists(args.copierPid); t += 50) await sleep(50);
}
await finish(exitCodeOf(status));
