import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { access } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Buffer } from "node:buffer";
import { ignoreErrno } from "../base/errors.js";
import { ClockSeedHelper, clockPayload, helperRequest, parseAnswer, type SpawnHelper } from "./clock-seed-helper.js";

// A stand-in for `kata-ts-reseed --serve` speaking its protocol: it records each request and answers
// "ok", or fails the clock when asked for second 13, stays silent at second 77, or exits at second 99.
// It touches no clock.
const fakeHelper = `
let buf = Buffer.alloc(0);
process.stdin.on("data", (c) => {
  buf = Buffer.concat([buf, c]);
  while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32LE(1)) {
    const op = String.fromCharCode(buf[0]);
    const p = buf.subarray(5, 5 + buf.readUInt32LE(1));
    buf = buf.subarray(5 + p.length);
    const sec = op === "T" ? p.readBigInt64LE(0) : -1n;
    if (sec === 99n) { process.stderr.write("fake: asked to die"); process.exit(3); }
    if (sec === 77n) continue;
    const msg = sec === 13n ? Buffer.from("clock_settime: Operation not permitted") : Buffer.alloc(0);
    const head = Buffer.alloc(5);
    head[0] = msg.length === 0 ? 0 : 1;
    head.writeUInt32LE(msg.length, 1);
    process.stderr.write(op + ":" + p.length + " pid " + process.pid + "\\n");
    process.stdout.write(Buffer.concat([head, msg]));
  }
});
`;

function fakeSpawner(): { spawn: SpawnHelper; count: () => number } {
  let n = 0;
  return {
    spawn: (_file, args) => {
      assert.deepEqual(args, ["--serve"]);
      n++;
      return spawn(process.execPath, ["-e", fakeHelper], { stdio: ["pipe", "pipe", "pipe"] });
    },
    count: () => n,
  };
}

test("frames: op, little-endian length, payload; the clock as two int64", () => {
  const f = helperRequest("T", clockPayload(1_700_000_000n, 250_000n));
  assert.equal(f.length, 5 + 16);
  assert.equal(f.toString("latin1", 0, 1), "T");
  assert.equal(f.readUInt32LE(1), 16);
  assert.equal(f.readBigInt64LE(5), 1_700_000_000n);
  assert.equal(f.readBigInt64LE(13), 250_000n);
  assert.throws(() => clockPayload(1n, 1_000_000n), /out of range/);
  assert.throws(() => helperRequest("R", new Uint8Array(4097)), /at most 4096/);
});

test("answers: waits for a whole one, refuses a malformed one", () => {
  assert.equal(parseAnswer(Buffer.from([0, 0, 0])), undefined);
  assert.deepEqual(parseAnswer(Buffer.from([0, 0, 0, 0, 0])), { ok: true, message: "", rest: Buffer.alloc(0) });
  assert.equal(parseAnswer(Buffer.from([1, 3, 0, 0, 0, 0x61])), undefined);
  assert.equal(parseAnswer(Buffer.from([1, 1, 0, 0, 0, 0x61]))?.message, "a");
  assert.throws(() => parseAnswer(Buffer.from([7, 0, 0, 0, 0])), /malformed answer/);
  assert.throws(() => parseAnswer(Buffer.from([0, 0, 0, 1, 0])), /malformed answer/);
});

test("ClockSeedHelper (fake helper): one process serves every call; a refusal keeps it; a death restarts it", async () => {
  const f = fakeSpawner();
  const h = new ClockSeedHelper("/fake", { spawn: f.spawn });
  try {
    // Concurrent calls are queued: each gets its own answer.
    await Promise.all([h.reseed(new Uint8Array(512)), h.setTime(1_700_000_000n, 0n), h.reseed(new Uint8Array(1))]);
    assert.equal(f.count(), 1, "one helper for all three calls");
    await assert.rejects(h.setTime(13n, 0n), /set the clock: clock_settime: Operation not permitted/);
    await h.reseed(new Uint8Array(8));
    assert.equal(f.count(), 1, "a refused request does not restart the helper");
    await assert.rejects(h.setTime(99n, 0n), /kata-ts-reseed --serve ended: fake: asked to die/);
    await h.setTime(1n, 0n);
    assert.equal(f.count(), 2, "the next call started a new helper");
    await assert.rejects(h.reseed(new Uint8Array(0)), /empty seed/);
  } finally {
    h.close();
  }
});

test("ClockSeedHelper (fake helper): a call with no answer misses its deadline, and the next call gets a new helper", async () => {
  const f = fakeSpawner();
  // Long enough for a fake helper (a Node process) to start on a loaded machine: the call after the
  // silent one starts a new one within it (1500 ms failed once at load 8-12).
  const h = new ClockSeedHelper("/fake", { spawn: f.spawn, deadlineMs: 4000 });
  try {
    await assert.rejects(h.setTime(77n, 0n), /set the clock: no answer from kata-ts-reseed --serve in 4000 ms/);
    await h.setTime(1n, 0n);
    assert.equal(f.count(), 2, "the silent helper was replaced");
  } finally {
    h.close();
  }
});

test("ClockSeedHelper: a helper that cannot be started fails the call, naming it", async () => {
  const h = new ClockSeedHelper("/nonexistent/kata-ts-reseed");
  await assert.rejects(h.setTime(1n, 0n), /set the clock: kata-ts-reseed --serve ended/);
});

// The real helper, with requests it answers without touching the host's clock or entropy pool.
const realHelper = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../native/kata-ts-reseed");

test("kata-ts-reseed --serve (the real binary): refuses a bad clock, keeps serving, exits 2 on garbage", async (t) => {
  const built = await access(realHelper).then(() => true, ignoreErrno("ENOENT"));
  if (built !== true) {
    t.skip(`${realHelper} not built (npm run build)`);
    return;
  }
  const child = spawn(realHelper, ["--serve"], { stdio: ["pipe", "pipe", "pipe"] });
  try {
    // microseconds out of range: the helper checks before clock_settime.
    const bad = Buffer.concat([Buffer.from("T"), Buffer.from([16, 0, 0, 0]), Buffer.alloc(16)]);
    bad.writeBigInt64LE(2_000_000n, 13);
    const out: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stdin.write(bad);
    child.stdin.write(Buffer.from("X\u0001\u0000\u0000\u0000z"));
    child.stdin.end();
    // "close", not "exit": the answer must have been read off stdout too.
    const code = await new Promise<number | null>((r) => child.once("close", r));
    assert.equal(code, 2, "an unknown op ends it with status 2");
    const a = parseAnswer(Buffer.concat(out));
    assert.deepEqual({ ok: a?.ok, message: a?.message }, { ok: false, message: "clock: microseconds out of range" });
  } finally {
    child.kill();
  }
});
