import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import {
  exitCodeOf,
  forwardedSignals,
  parseStandInArgs,
  recordStandIn,
  signalNumber,
  standInPid,
  standInRecord,
  takeWinsizes,
  type StandInArgs,
} from "./stand-in.js";
import { relaysThrough } from "./stdio-bridge.js";

const args: StandInArgs = {
  socket: "/run/kata-ts/sbs/s1/shim.sock",
  sandboxId: "s1",
  id: "c1",
  execId: "",
  dir: "/run/kata-ts/sbs/s1/io/io-abc",
  relay: ["stdout", "stderr"],
  copierPid: 0,
  log: "",
};

describe("parseStandInArgs", () => {
  it("reads back what the CLI wrote", () => {
    assert.deepEqual(parseStandInArgs(JSON.stringify(args)), args);
  });

  it("refuses a relay entry that is not a stdio name", () => {
    const bad = JSON.stringify({ ...args, relay: ["stdout", "../etc"] });

    assert.throws(() => parseStandInArgs(bad), kataError(Code.InvalidArgument, /relay/));
  });

  it("refuses a missing field, naming it", () => {
    const partial: Record<string, unknown> = { ...args };
    delete partial["socket"];

    assert.throws(() => parseStandInArgs(JSON.stringify(partial)), kataError(Code.InvalidArgument, /socket/));
  });

  it("refuses a negative copier pid and an oversized argument", () => {
    assert.throws(
      () => parseStandInArgs(JSON.stringify({ ...args, copierPid: -1 })),
      kataError(Code.InvalidArgument, /copierPid/),
    );
    assert.throws(() => parseStandInArgs("x".repeat(17 * 1024)), kataError(Code.InvalidArgument, /16 KiB/));
  });
});

describe("parseStandInArgs winsize", () => {
  it("keeps winsize when set, and refuses a non-boolean", () => {
    assert.deepEqual(parseStandInArgs(JSON.stringify({ ...args, winsize: true })), { ...args, winsize: true });
    assert.throws(
      () => parseStandInArgs(JSON.stringify({ ...args, winsize: "yes" })),
      kataError(Code.InvalidArgument, /winsize/),
    );
  });
});

describe("takeWinsizes", () => {
  it("takes whole lines and keeps the unfinished rest", () => {
    assert.deepEqual(takeWinsizes("40 120\n50 1"), { sizes: [{ rows: 40, cols: 120 }], rest: "50 1" });
    assert.deepEqual(takeWinsizes("50 100\n"), { sizes: [{ rows: 50, cols: 100 }], rest: "" });
  });

  it("skips lines out of a pty's range or not two numbers, and drops an overlong rest", () => {
    assert.deepEqual(takeWinsizes("0 80\n24 70000\nx y\n-1 5\n24 80\n"), { sizes: [{ rows: 24, cols: 80 }], rest: "" });
    assert.deepEqual(takeWinsizes("9".repeat(100)), { sizes: [], rest: "" });
  });
});

describe("exitCodeOf", () => {
  it("is the process's exit status: 0, 3, and 137 for one killed by SIGKILL (128+9, as the guest reports it)", () => {
    assert.deepEqual([0, 3, 137].map(exitCodeOf), [0, 3, 137]);
  });

  it("is 255 for a status no exit code can carry", () => {
    assert.deepEqual([256, -1, 1.5].map(exitCodeOf), [255, 255, 255]);
  });
});

describe("forwardedSignals", () => {
  it("forwards what a caller sends to end or steer a process (TERM, INT, HUP, QUIT, USR1, USR2, CONT)", () => {
    for (const s of ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCONT"] as const) {
      assert.ok(forwardedSignals.includes(s), s);
    }
  });

  it("keeps the stand-in's own noise (CHLD, PIPE, WINCH) and the uncatchable ones out", () => {
    for (const s of ["SIGCHLD", "SIGPIPE", "SIGWINCH", "SIGKILL", "SIGSTOP"] as const) {
      assert.ok(!forwardedSignals.includes(s), s);
    }
  });

  it("gives the Linux numbers the service's Kill takes", () => {
    assert.deepEqual(
      ["SIGTERM", "SIGINT", "SIGHUP"].map((s) => signalNumber(s as NodeJS.Signals)),
      [15, 2, 1],
    );
  });
});

describe("relaysThrough", () => {
  const stat = (char: boolean): { isCharacterDevice(): boolean } => ({ isCharacterDevice: () => char });

  it("copies files, pipes and sockets through the caller's own descriptor, and reopens character devices", () => {
    assert.equal(relaysThrough(stat(false)), true);
    assert.equal(relaysThrough(stat(true)), false);
  });
});

describe("the stand-in record", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-standin-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("gives back the pid noted for a container", async () => {
    await recordStandIn(dir, "c1", 4242);

    assert.equal(await standInPid(dir, "c1"), 4242);
  });

  it("is undefined for a container with no note, or a note that is not a pid", async () => {
    await recordStandIn(dir, "c2", 1);
    await writeFile(standInRecord(dir, "c2"), "12; rm -rf /");

    assert.equal(await standInPid(dir, "none"), undefined);
    assert.equal(await standInPid(dir, "c2"), undefined);
  });
});
