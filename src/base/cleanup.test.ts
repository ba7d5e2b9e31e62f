import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CleanupStack } from "./cleanup.js";
import { Code, KataError, describeError, isKataError } from "./errors.js";

describe("CleanupStack", () => {
  it("undoes steps most recent first", async () => {
    const undo = new CleanupStack();
    const order: string[] = [];
    undo.defer("a", () => {
      order.push("a");
    });
    undo.defer("b", () => {
      order.push("b");
    });

    assert.deepEqual(await undo.runAll(), []);
    assert.deepEqual(order, ["b", "a"]);
    assert.equal(undo.size, 0);
  });

  describe("unwind", () => {
    it("rethrows the original error object when every step succeeds", async () => {
      const undo = new CleanupStack();
      undo.defer("ok", () => undefined);
      const original = new Error("setup failed");

      await assert.rejects(undo.unwind(original), (e) => e === original);
    });

    it("keeps the original as cause, with its code, message and details, and carries failed undos", async () => {
      const undo = new CleanupStack();
      const ebusy = Object.assign(new Error("EBUSY"), { code: "EBUSY" });
      undo.defer("unmount /a", () => Promise.reject(ebusy));
      undo.defer("remove /b", () => {
        throw new KataError(Code.FailedPrecondition, "not empty");
      });
      const original = new KataError(Code.NotFound, "create container c1", { details: { containerId: "c1" } });

      const thrown = await undo.unwind(original).catch((e: unknown) => e);

      assert.ok(isKataError(thrown, Code.NotFound));
      assert.equal(thrown.cause, original);
      assert.equal(thrown.message, "create container c1");
      assert.deepEqual(thrown.details, { containerId: "c1" });
      assert.equal(thrown.suppressed.length, 2);
      const [first, second] = thrown.suppressed;
      assert.ok(isKataError(first, Code.FailedPrecondition) && first.message === "remove /b");
      assert.ok(isKataError(second, Code.Internal) && second.cause === ebusy);
      assert.equal(
        describeError(thrown),
        "create container c1; also failed: remove /b: not empty; also failed: unmount /a: EBUSY",
      );
    });

    it("wraps a foreign original without losing it", async () => {
      const undo = new CleanupStack();
      undo.defer("x", () => Promise.reject(new Error("undo x failed")));
      const original = Object.assign(new Error("ENOSPC"), { code: "ENOSPC" });

      const thrown = await undo.unwind(original).catch((e: unknown) => e);

      assert.ok(isKataError(thrown, Code.Internal));
      assert.equal(thrown.cause, original);
      assert.equal(describeError(thrown), "ENOSPC; also failed: x: undo x failed");
    });
  });

  describe("close", () => {
    it("resolves when every step succeeds", async () => {
      const undo = new CleanupStack();
      undo.defer("ok", () => Promise.resolve());

      await undo.close("teardown");
    });

    it("throws one error named by the operation, coded and caused by the first failure", async () => {
      const undo = new CleanupStack();
      const later = new Error("second");
      undo.defer("step 1", () => Promise.reject(later));
      undo.defer("step 2", () => Promise.reject(new KataError(Code.Unavailable, "first")));
      let ran = false;
      undo.defer("step 3", () => {
        ran = true;
      });

      const thrown = await undo.close("destroy sandbox s1").catch((e: unknown) => e);

      assert.ok(ran);
      assert.ok(isKataError(thrown, Code.Unavailable));
      assert.equal(thrown.message, "destroy sandbox s1");
      assert.ok(isKataError(thrown.cause) && thrown.cause.message === "step 2");
      assert.equal(thrown.suppressed.length, 1);
      assert.ok(isKataError(thrown.suppressed[0]) && thrown.suppressed[0].cause === later);
      assert.equal(describeError(thrown), "destroy sandbox s1: step 2: first; also failed: step 1: second");
    });
  });
});
