import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  Code,
  KataError,
  describeError,
  errnoOf,
  firstFailure,
  ignoreErrno,
  isKataError,
  withSuppressed,
  wrap,
} from "./errors.js";

function errno(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe("describeError", () => {
  it("renders the cause chain, skipping a cause that repeats its wrapper's message", () => {
    const root = errno("ENOENT", "connect ENOENT /run/x/qmp.sock");
    const e = wrap(new KataError(Code.Unavailable, "qmp connect", { cause: root }), "boot vm");

    assert.equal(describeError(e), "boot vm: qmp connect: connect ENOENT /run/x/qmp.sock");
    assert.equal(describeError(new KataError(Code.Internal, "same", { cause: new Error("same") })), "same");
  });

  it("renders suppressed failures after the chain, with their own chains", () => {
    const e = new KataError(Code.NotFound, "create container c1", {
      cause: new Error("no rootfs"),
      suppressed: [
        new KataError(Code.Internal, "unmount /a", { cause: errno("EBUSY", "EBUSY") }),
        "remove /b: plain text",
      ],
    });

    assert.equal(
      describeError(e),
      "create container c1: no rootfs; also failed: unmount /a: EBUSY; also failed: remove /b: plain text",
    );
  });

  it("finds suppressed failures anywhere along the cause chain", () => {
    const inner = new KataError(Code.Internal, "inner", { suppressed: [new Error("undo x")] });

    assert.equal(describeError(wrap(inner, "outer")), "outer: inner; also failed: undo x");
  });

  it("stops rendering suppressed failures nested too deep", () => {
    let e = new KataError(Code.Internal, "level 0");
    for (let i = 1; i < 10; i++) e = new KataError(Code.Internal, `level ${i}`, { suppressed: [e] });

    const text = describeError(e);

    assert.ok(text.startsWith("level 9; also failed: level 8"), text);
    assert.ok(!text.includes("level 0"), text);
  });
});

describe("KataError", () => {
  it("has no suppressed failures unless given", () => {
    assert.deepEqual(new KataError(Code.Internal, "x").suppressed, []);
  });
});

describe("ignoreErrno", () => {
  it("swallows only the named errno codes and rethrows everything else as it is", () => {
    const gone = errno("ENOENT", "gone");
    const busy = errno("EBUSY", "busy");

    const ignore = ignoreErrno("ENOENT", "ENOTDIR");

    assert.doesNotThrow(() => {
      ignore(gone);
    });
    assert.throws(
      () => {
        ignore(busy);
      },
      (e) => e === busy,
    );
    assert.throws(
      () => {
        ignore("text");
      },
      (e) => e === "text",
    );
    assert.equal(errnoOf(busy), "EBUSY");
    assert.equal(errnoOf(new Error("x")), undefined);
  });
});

describe("firstFailure", () => {
  it("is undefined when nothing failed", () => {
    assert.equal(firstFailure("teardown", []), undefined);
  });

  it("is named by the operation, caused and coded by the first failure, the rest suppressed", () => {
    const first = new KataError(Code.Unavailable, "detach /a");
    const second = new Error("detach /b");

    const e = firstFailure("release storages", [first, second]);

    assert.ok(isKataError(e, Code.Unavailable));
    assert.equal(e.cause, first);
    assert.deepEqual(e.suppressed, [second]);
    assert.equal(describeError(e), "release storages: detach /a; also failed: detach /b");
  });
});

describe("withSuppressed", () => {
  it("is the original itself when nothing else failed", () => {
    const original = new Error("kill failed");

    assert.equal(withSuppressed(original, []), original);
  });

  it("keeps the original as cause, with its code, message and details, the others beside it", () => {
    const original = new KataError(Code.NotFound, "kill c1", { details: { containerId: "c1" } });
    const check = new Error("state failed");

    const e = withSuppressed(original, [check]);

    assert.ok(isKataError(e, Code.NotFound));
    assert.equal(e.cause, original);
    assert.equal(e.message, "kill c1");
    assert.deepEqual(e.details, { containerId: "c1" });
    assert.deepEqual(e.suppressed, [check]);
    assert.equal(describeError(e), "kill c1; also failed: state failed");
  });
});
