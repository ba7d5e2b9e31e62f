import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import {
  closeSync,
  constants as fsc,
  createReadStream,
  createWriteStream,
  openSync,
  readdirSync,
  readlinkSync,
} from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough, Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { setImmediate as turn } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { classifyFd, pumpFifos } from "./stdio-bridge.js";

let dir = "";
let n = 0;

function fifo(): string {
  const p = path.join(dir, `fifo${n++}`);
  execFileSync("mkfifo", ["-m", "0600", p]);
  return p;
}

/** A stream that keeps what is written to it. */
class Collector extends Writable {
  readonly #chunks: Buffer[] = [];

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.#chunks.push(chunk);
    cb();
  }

  get text(): string {
    return Buffer.concat(this.#chunks).toString("utf8");
  }
}

/** True when `p` has not settled after the event loop had a turn to settle it. */
async function pending(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    (_e: unknown) => (settled = true),
  );
  await turn();
  return !settled;
}

/** Writes `data` to the fifo at `p` as the service would (open, write, close) and waits until closed. */
function writeAll(p: string, data: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const w = createWriteStream(p);
    w.once("error", reject);
    w.end(data, () => {
      w.once("close", () => {
        resolve();
      });
    });
  });
}

/** Everything a reader of the fifo at `p` gets until end of input. */
function readAll(p: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const r = createReadStream(p);
    r.on("data", (c) => chunks.push(Buffer.from(c)));
    r.once("end", () => {
      resolve(Buffer.concat(chunks).toString("utf8"));
    });
    r.once("error", reject);
  });
}

/** This process's socket fds with their link text ("socket:[inode]"), which tells sockets apart. */
function socketFds(): [number, string][] {
  const out: [number, string][] = [];
  for (const f of readdirSync("/proc/self/fd")) {
    let link: string;
    try {
      link = readlinkSync(`/proc/self/fd/${f}`);
    } catch {
      continue; // the directory's own fd, closed by now
    }
    if (link.startsWith("socket:")) out.push([Number(f), link]);
  }
  return out;
}

const self = fileURLToPath(import.meta.url);
/** The module under test, as this file runs: TypeScript under tsx, or compiled JavaScript in dist/. */
const fromSource = self.endsWith(".ts");
const bridgeModule = path.join(path.dirname(self), fromSource ? "stdio-bridge.ts" : "stdio-bridge.js");

/**
 * Runs `body` in a Node process of its own (a pending open would keep it alive: that is what these
 * tests look at), with `pumpFifos`, `fs`, `quiet()` (stdio streams that go nowhere) and
 * `openBlocked(n)` (resolves once n threads wait in openat(2), read from /proc) in scope.
 * A process still alive after 5 s is killed: its code is then null.
 */
function runScript(
  body: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `
    import fs from "node:fs";
    import { PassThrough } from "node:stream";
    import { pumpFifos } from ${JSON.stringify(bridgeModule)};
    const quiet = () => ({ stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough() });
    const inOpen = () => fs.readdirSync("/proc/self/task").filter((t) => {
      try { return fs.readFileSync(\`/proc/self/task/\${t}/syscall\`, "utf8").startsWith("257 "); } catch { return false; }
    }).length;
    const openBlocked = (n) => new Promise((resolve) => {
      const check = () => (inOpen() >= n ? resolve() : setImmediate(check));
      check();
    });
    ${body}
  `;
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [...(fromSource ? ["--import", "tsx"] : []), "--input-type=module", "-e", script],
      { timeout: 5000, killSignal: "SIGKILL", env: { ...process.env, ...env } },
      (_e, stdout, stderr) => {
        resolve({ code: child.exitCode, stdout, stderr });
      },
    );
  });
}

function streams(): { stdin: PassThrough; stdout: Collector; stderr: Collector } {
  return { stdin: new PassThrough(), stdout: new Collector(), stderr: new Collector() };
}

describe("classifyFd", () => {
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-stdio-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("names a character device's fd (a terminal, /dev/null) by its /proc path", () => {
    const fd = openSync("/dev/null", "w");

    const p = classifyFd(fd);
    closeSync(fd);

    assert.equal(p, `/proc/${process.pid}/fd/${fd}`);
  });

  it("uses the pid it is given in the /proc path", () => {
    const fd = openSync("/dev/null", "r");

    const p = classifyFd(fd, 4242);
    closeSync(fd);

    assert.equal(p, `/proc/4242/fd/${fd}`);
  });

  it('says "relay" for a regular file: a reopened one would start at offset 0, losing the caller\'s position', async () => {
    const file = path.join(dir, "out.txt");
    await writeFile(file, "content");
    const fd = openSync(file, "a");

    const p = classifyFd(fd);
    closeSync(fd);

    assert.equal(p, "relay");
  });

  it('says "relay" for a pipe (a fifo\'s writer)', () => {
    const p = fifo();
    const read = openSync(p, fsc.O_RDONLY | fsc.O_NONBLOCK);
    const write = openSync(p, fsc.O_WRONLY | fsc.O_NONBLOCK);

    try {
      assert.equal(classifyFd(write), "relay");
    } finally {
      closeSync(read);
      closeSync(write);
    }
  });

  it('says "relay" for a unix socket, which cannot be reopened by path', async () => {
    const before = new Set(socketFds().map(([, link]) => link));
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(dir, "s.sock"), resolve));

    try {
      const fds = socketFds().filter(([, link]) => !before.has(link));
      const kinds = fds.map(([fd]) => classifyFd(fd));

      assert.equal(fds.length, 1, "listening opened one socket");
      assert.deepEqual(kinds, ["relay"]);
    } finally {
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    }
  });

  it("gives an empty string for a closed fd", async () => {
    const file = path.join(dir, "closed.txt");
    await writeFile(file, "");
    const fd = openSync(file, "r");
    closeSync(fd);

    const p = classifyFd(fd);

    assert.equal(p, "");
  });
});

describe("pumpFifos", () => {
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-stdio-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("copies an output fifo to its stream and is done when the writer closes", { timeout: 10_000 }, async () => {
    const out = fifo();
    const s = streams();
    const pump = pumpFifos({ stdout: out }, s);

    const waitedForWriter = await pending(pump.done);
    await writeAll(out, "hello from the container\n");
    await pump.done;

    assert.equal(waitedForWriter, true);
    assert.equal(s.stdout.text, "hello from the container\n");
    assert.equal(s.stdout.writableEnded, false, "the caller's stream stays open");
  });

  it("is done only when both outputs ended", { timeout: 10_000 }, async () => {
    const out = fifo();
    const err = fifo();
    const s = streams();
    const pump = pumpFifos({ stdout: out, stderr: err }, s);

    await writeAll(out, "out");
    const waitedForStderr = await pending(pump.done);
    await writeAll(err, "err");
    await pump.done;

    assert.equal(waitedForStderr, true);
    assert.equal(s.stdout.text, "out");
    assert.equal(s.stderr.text, "err");
  });

  it("delivers stdin written before a reader opened, then end of input", { timeout: 10_000 }, async () => {
    const input = fifo();
    const s = streams();
    const pump = pumpFifos({ stdin: input }, s);
    s.stdin.write("early ");

    const reading = readAll(input);
    s.stdin.write("late");
    s.stdin.end();
    const got = await reading;
    pump.close();

    assert.equal(got, "early late");
  });

  it("delivers stdin that ended before a reader opened", { timeout: 10_000 }, async () => {
    const input = fifo();
    const s = streams();
    const pump = pumpFifos({ stdin: input }, s);
    s.stdin.end("all of it");

    const got = await readAll(input);
    pump.close();

    assert.equal(got, "all of it");
  });

  it("releases a pending stdin open on close when no reader ever comes", { timeout: 20_000 }, async () => {
    const input = fifo();
    // Close once the open waits in the kernel for a reader, then let the process end by itself.
    const script = `
      const pump = pumpFifos({ stdin: ${JSON.stringify(input)} }, quiet());
      await openBlocked(1);
      pump.close();
      process.stdout.write("closed\\n");
    `;

    const result = await runScript(script);

    assert.equal(result.stdout, "closed\n", `ran to its end (stderr: ${result.stderr})`);
    assert.equal(result.code, 0, "exited by itself");
  });

  it(
    "releases a stdin open on close even when the open had not started yet",
    {
      timeout: 20_000,
    },
    async () => {
      const input = fifo();
      const blocker = fifo();
      // One threadpool thread, held by an open of another fifo: the stdin open waits in the queue.
      const script = `
        fs.open(${JSON.stringify(blocker)}, "r", (e, fd) => { if (!e) fs.closeSync(fd); });
        await openBlocked(1);
        const pump = pumpFifos({ stdin: ${JSON.stringify(input)} }, quiet());
        pump.close();
        fs.closeSync(fs.openSync(${JSON.stringify(blocker)}, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
        process.stdout.write("closed\\n");
      `;

      const result = await runScript(script, { UV_THREADPOOL_SIZE: "1" });

      assert.equal(result.stdout, "closed\n", `ran to its end (stderr: ${result.stderr})`);
      assert.equal(result.code, 0, "exited by itself");
    },
  );
});
