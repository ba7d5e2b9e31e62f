// Property-based tests of config.json text parsing: any text gives its value or one INVALID_ARGUMENT that
// names the file and, when it says where, a place inside the text; the locator agrees with JSON.parse on
// which texts are JSON at all.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Code } from "../base/errors.js";
import { fuzzParams, onlyKataError } from "../../test/helpers/fuzz.js";
import { parseConfigJson } from "./bundle.js";
import { jsonErrorOffset } from "./json-position.js";

/** JSON text with one edit (a character inserted, removed or replaced): mostly almost-JSON. */
const editedJson = fc
  .record({
    text: fc.json({ maxDepth: 3 }),
    at: fc.nat(),
    cut: fc.nat({ max: 2 }),
    // Single characters JSON cares about, and a string that looks like V8's "at position N".
    insert: fc.string({
      unit: fc.oneof(
        fc.constantFrom(...Array.from('{}[]:,"\\ \n\t0123456789-+.eEtrufalsn\u0000\u2028x')),
        fc.constant('"position 99"'),
      ),
      maxLength: 2,
    }),
  })
  .map(({ text, at, cut, insert }) => {
    const i = at % (text.length + 1);
    return text.slice(0, i) + insert + text.slice(i + cut);
  });

const anyText = fc.oneof(fc.json({ maxDepth: 3 }), editedJson, fc.string({ unit: "binary", maxLength: 20 }));

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch (e) {
    assert.ok(e instanceof SyntaxError, String(e));
    return false;
  }
}

describe("parseConfigJson (fuzz)", () => {
  it("gives the value, or INVALID_ARGUMENT naming the file and a line and column inside the text", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const r = onlyKataError(() => parseConfigJson(text, "/b/config.json"));

        if (r.ok) {
          assert.deepEqual(r.value, JSON.parse(text));
          return;
        }
        assert.equal(r.error.code, Code.InvalidArgument);
        assert.ok(r.error.message.startsWith("/b/config.json is not valid JSON"), r.error.message);
        const where = /^\/b\/config\.json is not valid JSON at line (\d+), column (\d+)$/.exec(r.error.message);
        assert.ok(where !== null, `says where: ${r.error.message}`);
        const lines = text.split("\n");
        const line = Number(where[1]);
        const column = Number(where[2]);
        assert.ok(line >= 1 && line <= lines.length, `line ${line} of ${lines.length}`);
        assert.ok(column >= 1 && column <= (lines[line - 1] ?? "").length + 1, `column ${column} of line ${line}`);
      }),
      fuzzParams(1000),
    );
  });

  it("locates an error exactly in the texts JSON.parse refuses", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const offset = jsonErrorOffset(text);

        assert.equal(offset === undefined, parses(text), `offset ${String(offset)}`);
        if (offset !== undefined) assert.ok(offset >= 0 && offset <= text.length, `offset ${offset} of ${text.length}`);
      }),
      fuzzParams(1000),
    );
  });
});
