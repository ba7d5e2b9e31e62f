// LogFifo on real fifos in a temp directory (mkfifo): the kernel's pipe semantics are what matter.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fitLine, LogFifo, pipeBufBytes } from "./log-fifo.js";

const dir = mkdtempSync(path.join(tmpdir(), "kata-ts-logfifo-"));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
function mkfifo(): string {
  const p = path.join(dir, `log${n++}`);
  execFileSync("mkfifo", ["-m", "0600", p]);
  return p;
}

/** containerd's side: the read end, non-blocking (so a test never hangs on an empty pipe). */
function openReader(p: string): number {
  return openSync(p, constants.O_RDONLY | constants.O_NONBLOCK);
}

function drain(fd: number): string {
  const buf = Buffer.alloc(1 << 16);
  let out = "";
  for (;;) {
    let got: number;
    try {
      got = readSync(fd, buf);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EAGAIN") return out;
      throw e;
    }
    if (got === 0) return out;
    out += buf.subarray(0, got).toString();
  }
}

describe("LogFifo", () => {
  it("writes lines to a fifo containerd reads", () => {
    const p = mkfifo();
    const reader = openReader(p);
    const fifo = new LogFifo(p);

    fifo.write('{"msg":"one"}\n');
    fifo.write('{"msg":"two"}');

    assert.equal(drain(reader), '{"msg":"one"}\n{"msg":"two"}\n');
    assert.equal(fifo.written, 2);
    assert.equal(fifo.dropped, 0);
    fifo.close();
    closeSync(reader);
  });

  it("drops and counts lines while nobody reads (ENXIO), without blocking", () => {
    const p = mkfifo();
    const fifo = new LogFifo(p);

    const t0 = performance.now();
    for (let i = 0; i < 100; i++) fifo.write(`line ${i}\n`);

    assert.ok(performance.now() - t0 < 1000);
    assert.equal(fifo.dropped, 100);
    assert.equal(fifo.closedBecause, "ENXIO");
  });

  it("drops lines that do not fit a full pipe (containerd not reading), then reports the count in the next line", () => {
    const p = mkfifo();
    const reader = openReader(p);
    const fifo = new LogFifo(p);
    const line = `${"x".repeat(999)}\n`;

    // A pipe holds 64 KiB by default: 200 KB of lines cannot all go in.
    for (let i = 0; i < 200; i++) fifo.write(line);
    const dropped = fifo.dropped;
    const written = fifo.written;
    const got = drain(reader);
    fifo.write("after\n");
    const next = drain(reader);

    assert.ok(dropped > 0, "some lines were dropped");
    assert.equal(written + dropped, 200);
    assert.equal(got.length, written * 1000, "only whole lines arrived");
    assert.match(next, new RegExp(`^\\{.*"dropped":${dropped}\\}\\nafter\\n$`));
    fifo.close();
    closeSync(reader);
  });

  it("survives the reader going away (EPIPE) and writes again once a reader is back, after the retry interval", () => {
    const p = mkfifo();
    let now = 0;
    const fifo = new LogFifo(p, { retryMs: 1000, now: () => now });
    const first = openReader(p);
    fifo.write("a\n");
    assert.equal(drain(first), "a\n");
    closeSync(first);

    fifo.write("lost\n");
    assert.equal(fifo.closedBecause, "EPIPE");
    const second = openReader(p);
    now = 500;
    fifo.write("too soon\n");
    now = 1500;
    fifo.write("b\n");

    assert.match(drain(second), /"dropped":2\}\nb\n$/);
    assert.equal(fifo.dropped, 2);
    fifo.close();
    closeSync(second);
  });

  it("refuses to write to a path that is not a fifo", () => {
    const p = path.join(dir, "regular");
    writeFileSync(p, "");
    const fifo = new LogFifo(p);

    fifo.write("x\n");

    assert.equal(fifo.closedBecause, "not a fifo");
    assert.equal(fifo.dropped, 1);
  });

  it("cuts a line longer than PIPE_BUF so that it stays one atomic write", () => {
    assert.equal(fitLine("short").toString(), "short\n");
    const long = fitLine("y".repeat(10_000));
    assert.equal(long.length, pipeBufBytes);
    assert.equal(long.at(-1), 0x0a);
  });
});
