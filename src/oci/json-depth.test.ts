import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { maxJsonDepth, tooDeepAt } from "./json-depth.js";

/** `levels` arrays, one inside the other, around 1. */
function nested(levels: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

describe("tooDeepAt", () => {
  it("accepts scalars and values nested up to the limit", () => {
    assert.equal(tooDeepAt("s"), undefined);
    assert.equal(tooDeepAt({ a: nested(maxJsonDepth - 1) }), undefined);
  });

  it("names the path of the first array or object past the limit, as parse-spec names fields", () => {
    const path = tooDeepAt({ ok: 1, annotations: { a: nested(maxJsonDepth - 1) } });

    assert.equal(path, `annotations.a${"[0]".repeat(maxJsonDepth - 2)}`);
  });

  it("puts the given root in front of the path", () => {
    assert.equal(tooDeepAt(nested(3), "process", 2), "process[0][0]");
  });

  it("walks two million levels without overflowing the stack", () => {
    const text = `{"x":${"[".repeat(2_000_000)}${"]".repeat(2_000_000)}}`;

    const path = tooDeepAt(JSON.parse(text));

    assert.equal(path, `x${"[0]".repeat(maxJsonDepth - 1)}`);
  });
});
