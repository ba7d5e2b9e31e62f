import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sessionOnWire } from "./service.js";

describe("sessionOnWire", () => {
  it("numbers sessions from 1 and wraps within a uint32, never to 0 (0 means an agent that does not say)", () => {
    assert.deepEqual([1, 2, 3].map(sessionOnWire), [1, 2, 3]);
    assert.equal(sessionOnWire(0xffff_ffff), 0xffff_ffff);
    assert.equal(sessionOnWire(0xffff_ffff + 1), 1);
    assert.equal(sessionOnWire(2 * 0xffff_ffff), 0xffff_ffff);
  });
});
