import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { closeSync, createReadStream, createWriteStream, openSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
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
    () => (settled = true),
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

  it("names a file's fd by its /proc path, which reopens the same file", async () => {
    const file = path.join(dir, "out.txt");
    await writeFile(file, "content");
    const fd = openSync(file, "r");

    const p = classifyFd(fd);
    const reopened = readFileSync(p, "utf8");
    closeSync(fd);

    assert.equal(p, `/proc/${process.pid}/fd/${fd}`);
    assert.equal(reopened, "content");
  });

  it("uses the pid it is given in the /proc path", async () => {
    const file = path.join(dir, "other.txt");
    await writeFile(file, "x");
    const fd = openSync(file, "r");

    const p = classifyFd(fd, 4242);
    closeSync(fd);

    assert.equal(p, `/proc/4242/fd/${fd}`);
  });

  it('says "socket" for a unix socket, which cannot be reopened by path', async () => {
    const server = net.createServer();
    const before = new Set(readdirSync("/proc/self/fd"));
    await new Promise<void>((resolve) => server.listen(path.join(dir, "s.sock"), resolve));
    const socketFds = readdirSync("/proc/self/fd")
      .filter((f) => !before.has(f))
      .filter((f) => {
        try {
          return readlinkSync(`/proc/self/fd/${f}`).startsWith("socket:");
        } catch {
          return false; // the fd of readdir itself, gone already
        }
      });
    assert.ok(socketFds.length > 0, "listening opened a socket fd");

    const kinds = socketFds.map((f) => classifyFd(Number(f)));
    await new Promise<void>((resolve) => server.close(() => resolve()));

    assert.deepEqual(new Set(kinds), new Set(["socket"]));
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
    const bridge = path.join(path.dirname(fileURLToPath(import.meta.url)), "stdio-bridge.ts");
    // A process of its own: a pending open would keep it alive, which is what must not happen.
    const script = `
      import { PassThrough } from "node:stream";
      import { pumpFifos } from ${JSON.stringify(bridge)};
      const pump = pumpFifos({ stdin: ${JSON.stringify(input)} }, { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough() });
      pump.close();
      process.stdout.write("closed\\n");
    `;

    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        ["--import", "tsx", "--input-type=module", "-e", script],
        { timeout: 15_000, killSignal: "SIGKILL" },
        (_e, stdout, stderr) => {
          resolve({ code: child.exitCode, stdout, stderr });
        },
      );
    });

    assert.equal(result.code, 0, `exited by itself (stderr: ${result.stderr})`);
    assert.equal(result.stdout, "closed\n");
  });
});
