import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isKataError } from "../../../base/errors.js";
import { LineDecoder } from "./line-decoder.js";

describe("LineDecoder", () => {
  it("joins lines split across chunks and strips CRLF", () => {
    const d = new LineDecoder(16);

    assert.deepEqual(d.push(Buffer.from('{"a"')), []);
    assert.deepEqual(d.push(Buffer.from(':1}\r\n{"b":2}\n{')), ['{"a":1}', '{"b":2}']);
    assert.deepEqual(d.push(Buffer.from("}\n")), ["{}"]);
  });

  it("throws once an unterminated line exceeds the limit", () => {
    const d = new LineDecoder(4);

    assert.deepEqual(d.push(Buffer.from("abcd")), []);
    assert.throws(
      () => d.push(Buffer.from("e")),
      (e) => isKataError(e, "INTERNAL"),
    );
  });
});
