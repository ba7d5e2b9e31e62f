import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CachePool } from "./cache-pool.js";

describe("CachePool", () => {
  it("boots one VM at a time until the pool is full, hands out the oldest ready one and refills", () => {
    const pool = new CachePool(2);
    assert.deepEqual(pool.refill(), ["cache-1"]);
    assert.deepEqual(pool.refill(), [], "a second boot waits for the first");
    assert.equal(pool.booted("cache-1", true), true);
    assert.deepEqual(pool.refill(), ["cache-2"]);
    pool.booted("cache-2", true);
    assert.deepEqual(pool.refill(), [], "full");
    assert.deepEqual(pool.status(), { size: 2, booting: 0, ready: 2, handedOut: 0, quitting: false });

    assert.equal(pool.take(), "cache-1");
    assert.equal(pool.state("cache-1"), "handedOut");
    assert.deepEqual(pool.refill(), ["cache-3"], "a hand-out is refilled at once");
    pool.forget("cache-1");
    assert.deepEqual(pool.status(), { size: 2, booting: 1, ready: 1, handedOut: 0, quitting: false });
  });

  it("a failed boot frees its slot; with maxBooting 2 two boot at once", () => {
    const pool = new CachePool(3, 2);
    assert.deepEqual(pool.refill(), ["cache-1", "cache-2"]);
    assert.equal(pool.booted("cache-1", false), false);
    assert.equal(pool.state("cache-1"), undefined);
    assert.deepEqual(pool.refill(), ["cache-3"]);
  });

  it("take() with nothing ready is undefined; a ready VM that died is forgotten", () => {
    const pool = new CachePool(1);
    pool.refill();
    assert.equal(pool.take(), undefined);
    pool.booted("cache-1", true);
    pool.forget("cache-1");
    assert.equal(pool.take(), undefined);
    assert.deepEqual(pool.refill(), ["cache-2"]);
  });

  it("quit: no more boots or hand-outs, every VM is returned to be stopped, a late boot is refused", () => {
    const pool = new CachePool(2, 2);
    pool.refill();
    pool.booted("cache-1", true);
    assert.deepEqual(pool.quit().sort(), ["cache-1", "cache-2"]);
    assert.equal(pool.take(), undefined);
    assert.deepEqual(pool.refill(), []);
    assert.equal(pool.booted("cache-2", true), false);
  });

  it("refuses sizes below 1 and a boot report for a VM it does not know", () => {
    assert.throws(() => new CachePool(0), /must be >= 1/);
    assert.throws(() => new CachePool(1, 0), /must be >= 1/);
    assert.throws(() => new CachePool(1).booted("cache-9", true), /cache-9 is unknown, expected booting/);
  });
});
