import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { constants as fsc, openSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import type { AgentApi } from "../agent-client/agent-client.js";
import { deferred } from "../base/async.js";
import { Code, KataError } from "../base/errors.js";
import { nullLogger, type LogFields, type Logger } from "../base/log.js";
import { OutputBuffer } from "../guest/output-buffer.js";
import {
  ReadStreamResponseSchema,
  WaitProcessResponseSchema,
  WriteStreamResponseSchema,
} from "../protocol/gen/agent_pb.js";
import type { CallOptions } from "../protocol/ttrpc/client.js";
import { kataErrorChain } from "../../test/helpers/fakes.js";
import { PodProcess, lostExitStatus, type ExitInfo, type StdioPaths } from "./pod-process.js";

/** A process in the fake guest: output the test writes, stdin it records, an exit the test decides. */
class GuestProc {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdoutBuf = new OutputBuffer(this.stdout);
  readonly stderrBuf = new OutputBuffer(this.stderr);
  readonly stdin: Buffer[] = [];
  stdinClosed = false;
  readonly #stdinEnd = deferred<undefined>();
  /** Resolves when the host closed the process's stdin. */
  readonly stdinEnded = this.#stdinEnd.promise;
  readonly #exit = deferred<number>();
  readonly exitStatus = this.#exit.promise;

  /** The process ends: its outputs close and its status is known. */
  exit(status: number): void {
    this.stdout.end();
    this.stderr.end();
    this.#exit.resolve(status);
  }

  /** The VM is gone: every call about this process fails with `e`. */
  lose(e: KataError): void {
    this.stdout.destroy(e);
    this.stderr.destroy(e);
    this.#exit.reject(e);
  }

  closeStdin(): void {
    this.stdinClosed = true;
    this.#stdinEnd.resolve(undefined);
  }

  get stdinText(): string {
    return Buffer.concat(this.stdin).toString("utf8");
  }
}

interface Ids {
  readonly containerId?: string;
  readonly execId?: string;
}

/** The AgentApi calls PodProcess makes, answered as the guest agent answers them. */
class FakeAgent {
  readonly #procs = new Map<string, GuestProc>();

  /** A process the guest runs; execId "" is the container's init, as on the wire. */
  add(containerId: string, execId: string): GuestProc {
    const p = new GuestProc();
    this.#procs.set(`${containerId}/${execId}`, p);
    return p;
  }

  #proc(req: Ids): GuestProc {
    const key = `${req.containerId ?? ""}/${req.execId ?? ""}`;
    const p = this.#procs.get(key);
    if (p === undefined) throw new KataError(Code.NotFound, `fake agent: no process ${key}`);
    return p;
  }

  /** Arrow properties: the copier calls them unbound, as methods of a ttRPC client. */
  readonly readStdout = async (req: Ids & { len?: number }, opts?: CallOptions) =>
    create(ReadStreamResponseSchema, { data: await this.#proc(req).stdoutBuf.read(req.len ?? 0, opts?.signal) });

  readonly readStderr = async (req: Ids & { len?: number }, opts?: CallOptions) =>
    create(ReadStreamResponseSchema, { data: await this.#proc(req).stderrBuf.read(req.len ?? 0, opts?.signal) });

  readonly writeStdin = (req: Ids & { data?: Uint8Array }) => {
    const p = this.#proc(req);
    if (p.stdinClosed) return Promise.reject(new KataError(Code.FailedPrecondition, "stdin is closed"));
    const data = Buffer.from(req.data ?? new Uint8Array(0));
    p.stdin.push(data);
    return Promise.resolve(create(WriteStreamResponseSchema, { len: data.length }));
  };

  readonly closeStdin = (req: Ids) => {
    this.#proc(req).closeStdin();
    return Promise.resolve(create(EmptySchema));
  };

  readonly waitProcess = async (req: Ids) =>
    create(WaitProcessResponseSchema, { status: await this.#proc(req).exitStatus });

  get api(): AgentApi {
    // CAST: PodProcess calls only the five methods above; a call to any other fails the test.
    return this as unknown as AgentApi;
  }
}

class RecordingLogger implements Logger {
  readonly warnings: string[] = [];
  debug(): void {
    return;
  }
  info(): void {
    return;
  }
  warn(msg: string, _fields?: LogFields): void {
    this.warnings.push(msg);
  }
  error(msg: string): void {
    this.warnings.push(msg);
  }
  child(): Logger {
    return this;
  }
}

let dir = "";

const stdio = (paths: Partial<StdioPaths> = {}): StdioPaths => ({
  stdin: "",
  stdout: "",
  stderr: "",
  terminal: false,
  ...paths,
});

function mkfifo(name: string): string {
  const p = path.join(dir, name);
  execFileSync("mkfifo", ["-m", "0600", p]);
  return p;
}

/** The read end of a fifo, opened without waiting for a writer; resolves at end of file with what it got. */
function fifoReader(p: string): Promise<string> {
  const socket = new net.Socket({ fd: openSync(p, fsc.O_RDONLY | fsc.O_NONBLOCK), readable: true, writable: false });
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.once("end", () => {
      socket.destroy();
      resolve(Buffer.concat(chunks).toString("utf8"));
    });
    socket.once("error", reject);
  });
}

const noExitHook = (): Promise<void> => Promise.resolve();

describe("PodProcess", () => {
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-podproc-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe("open and attach", () => {
    it("copies the guest's stdout and stderr into the opened files", async () => {
      const agent = new FakeAgent();
      const guest = agent.add("c1", "");
      const out = path.join(dir, "out");
      const err = path.join(dir, "err");
      const p = new PodProcess("c1", "c1", stdio({ stdout: out, stderr: err }), nullLogger);
      await p.open();

      p.attach(agent.api, { onExit: noExitHook });
      guest.stdout.write("hello ");
      guest.stderr.write("warning\n");
      guest.stdout.write("world\n");
      guest.exit(0);
      await p.exited;

      assert.equal(await readFile(out, "utf8"), "hello world\n");
      assert.equal(await readFile(err, "utf8"), "warning\n");
    });

    it("appends to an output file instead of truncating it", async () => {
      const agent = new FakeAgent();
      const guest = agent.add("c1", "");
      const out = path.join(dir, "out");
      await writeFile(out, "earlier line\n");
      const p = new PodProcess("c1", "c1", stdio({ stdout: out }), nullLogger);
      await p.open();

      p.attach(agent.api, { onExit: noExitHook });
      guest.stdout.write("new line\n");
      guest.exit(0);
      await p.exited;

      assert.equal(await readFile(out, "utf8"), "earlier line\nnew line\n");
    });

    it("resolves exited with the status only once the output is completely in the files", async () => {
      const agent = new FakeAgent();
      const guest = agent.add("c1", "");
      const out = path.join(dir, "out");
      const err = path.join(dir, "err");
      const p = new PodProcess("c1", "c1", stdio({ stdout: out, stderr: err }), nullLogger);
      await p.open();
      const big = Buffer.alloc(3 << 20, "0123456789abcdef");

      p.attach(agent.api, { onExit: noExitHook });
      guest.stdout.write(big);
      guest.stderr.write("last words\n");
      guest.exit(7);
      const exit = await p.exited;
      const [outText, errText] = await Promise.all([readFile(out), readFile(err, "utf8")]);

      assert.equal(exit.exitStatus, 7);
      assert.equal(outText.length, big.length);
      assert.ok(outText.equals(big));
      assert.equal(errText, "last words\n");
      assert.equal(p.status, "stopped");
      assert.deepEqual(p.exit, exit);
    });

    it("runs onExit after the output drained and before waiters are released", async () => {
      const agent = new FakeAgent();
      const guest = agent.add("c1", "");
      const out = path.join(dir, "out");
      const p = new PodProcess("c1", "c1", stdio({ stdout: out }), nullLogger);
      await p.open();
      const seen: string[] = [];
      let released = false;
      void p.exited.then(() => (released = true));

      p.attach(agent.api, {
        onExit: async (exit: ExitInfo) => {
          seen.push(`${exit.exitStatus} ${await readFile(out, "utf8")} released=${released}`);
        },
      });
      guest.stdout.write("bye");
      guest.exit(3);
      await p.exited;

      assert.deepEqual(seen, ["3 bye released=false"]);
    });

    it("addresses an exec by its id and a container's init by the empty exec id", async () => {
      const agent = new FakeAgent();
      const init = agent.add("c1", "");
      const exec = agent.add("c1", "e1");
      const initOut = path.join(dir, "init");
      const execOut = path.join(dir, "exec");
      const pi = new PodProcess("c1", "c1", stdio({ stdout: initOut }), nullLogger);
      const pe = new PodProcess("c1", "e1", stdio({ stdout: execOut }), nullLogger);
      await pi.open();
      await pe.open();

      pi.attach(agent.api, { onExit: noExitHook });
      pe.attach(agent.api, { onExit: noExitHook });
      init.stdout.write("init");
      exec.stdout.write("exec");
      exec.exit(1);
      init.exit(0);
      const [ei, ee] = await Promise.all([pi.exited, pe.exited]);

      assert.equal(ei.exitStatus, 0);
      assert.equal(ee.exitStatus, 1);
      assert.equal(await readFile(initOut, "utf8"), "init");
      assert.equal(await readFile(execOut, "utf8"), "exec");
    });

    it("copies the stdin file to the guest and then closes the guest's stdin", async () => {
      const agent = new FakeAgent();
      const guest = agent.add("c1", "");
      const input = path.join(dir, "in");
      await writeFile(input, "line one\nline two\n");
      const p = new PodProcess("c1", "c1", stdio({ stdin: input }), nullLogger);
      await p.open();

      p.attach(agent.api, { onExit: noExitHook });
      await guest.stdinEnded;
      guest.exit(0);
      await p.exited;

      assert.equal(guest.stdinText, "line one\nline two\n");
      assert.equal(guest.stdinClosed, true);
    });

    it("opens no file for a process without stdio and still reports its exit", async () => {
      const agent = new FakeAgent();
      const guest = agent.add("c1", "");
      const p = new PodProcess("c1", "c1", stdio(), nullLogger);
      await p.open();

      p.attach(agent.api, { onExit: noExitHook });
      guest.exit(137);

      assert.equal((await p.exited).exitStatus, 137);
    });

    it("reports exit status 255 when the VM went away (UNAVAILABLE), without a warning", async () => {
      const agent = new FakeAgent();
      const guest = agent.add("c1", "");
      const out = path.join(dir, "out");
      const log = new RecordingLogger();
      const p = new PodProcess("c1", "c1", stdio({ stdout: out }), log);
      await p.open();

      p.attach(agent.api, { onExit: noExitHook });
      guest.lose(new KataError(Code.Unavailable, "ttrpc connection closed"));
      const exit = await p.exited;

      assert.equal(exit.exitStatus, lostExitStatus);
      assert.equal(exit.exitStatus, 255);
      assert.equal(p.status, "stopped");
      assert.equal(log.warnings.includes("wait failed"), false);
    });

    it("reports exit status 255 and warns when waiting fails otherwise", async () => {
      const agent = new FakeAgent();
      const guest = agent.add("c1", "");
      const log = new RecordingLogger();
      const p = new PodProcess("c1", "c1", stdio(), log);
      await p.open();

      p.attach(agent.api, { onExit: noExitHook });
      guest.lose(new KataError(Code.Internal, "agent bug"));
      const exit = await p.exited;

      assert.equal(exit.exitStatus, 255);
      assert.ok(log.warnings.includes("wait failed"));
    });

    it("still reports the exit when onExit fails", async () => {
      const agent = new FakeAgent();
      const guest = agent.add("c1", "");
      const log = new RecordingLogger();
      const p = new PodProcess("c1", "c1", stdio(), log);
      await p.open();

      p.attach(agent.api, { onExit: () => Promise.reject(new Error("disk full")) });
      guest.exit(2);
      const exit = await p.exited;

      assert.equal(exit.exitStatus, 2);
      assert.ok(log.warnings.includes("exit handling failed"));
    });
  });

  describe("open failures and releaseStdio", () => {
    it("closes the outputs it opened when a later one cannot be opened", async () => {
      const out = mkfifo("out");
      const reader = fifoReader(out);
      const p = new PodProcess(
        "c1",
        "c1",
        stdio({ stdout: out, stderr: path.join(dir, "no", "such", "err") }),
        nullLogger,
      );

      await assert.rejects(p.open(), kataErrorChain(Code.NotFound, "open stderr", "no/such/err"));

      assert.equal(await reader, "", "the stdout fifo was closed");
    });

    it("closes the opened stdio on releaseStdio", async () => {
      const out = mkfifo("out");
      const reader = fifoReader(out);
      const p = new PodProcess("c1", "c1", stdio({ stdout: out }), nullLogger);
      await p.open();

      p.releaseStdio();

      assert.equal(await reader, "", "the reader saw end of file");
    });
  });

  describe("markStopped", () => {
    it("releases waiters with the given status", async () => {
      const p = new PodProcess("c1", "c1", stdio(), nullLogger);

      p.markStopped(137);
      const exit = await p.exited;

      assert.equal(exit.exitStatus, 137);
      assert.equal(p.status, "stopped");
      assert.deepEqual(p.exit, exit);
    });

    it("keeps the first status when called again", async () => {
      const p = new PodProcess("c1", "c1", stdio(), nullLogger);

      p.markStopped(143);
      p.markStopped(0);

      assert.equal((await p.exited).exitStatus, 143);
      assert.equal(p.exit?.exitStatus, 143);
    });

    it("keeps the exit it recorded when the guest's wait of an attached process ends later", {}, async () => {
      const agent = new FakeAgent();
      const guest = agent.add("c1", "");
      const p = new PodProcess("c1", "c1", stdio(), nullLogger);
      await p.open();
      let onExitCalls = 0;
      p.attach(agent.api, {
        onExit: () => {
          onExitCalls++;
          return Promise.resolve();
        },
      });

      p.markStopped(137);
      const exit = await p.exited;
      guest.lose(new KataError(Code.Unavailable, "ttrpc connection closed"));
      await p.settled;

      assert.equal(exit.exitStatus, 137);
      assert.deepEqual(p.exit, exit);
      assert.equal(onExitCalls, 0);
    });
  });
});
