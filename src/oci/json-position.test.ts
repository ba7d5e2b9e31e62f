import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { jsonErrorOffset } from "./json-position.js";

describe("jsonErrorOffset", () => {
  it("finds nothing wrong in valid JSON, whatever its shape", () => {
    for (const t of ['{"a":[1,-2.5e3,true,false,null,"x\\u00e9\\n"]}', " [ ] ", "0", '"s"']) {
      assert.equal(jsonErrorOffset(t), undefined, t);
      JSON.parse(t);
    }
  });

  it("points at the first character that cannot be there", () => {
    assert.equal(jsonErrorOffset("[1,]"), 3);
    assert.equal(jsonErrorOffset('{"a" 1}'), 5);
    assert.equal(jsonErrorOffset('{"a":}'), 5);
    assert.equal(jsonErrorOffset('{"a":1,}'), 7);
    assert.equal(jsonErrorOffset("[1, 2"), 5);
    assert.equal(jsonErrorOffset('{"a":1} x'), 8);
    assert.equal(jsonErrorOffset("01"), 1);
  });
});
