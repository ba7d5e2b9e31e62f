import assert from "node:assert/strict";
import { constants } from "node:os";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { parseSignal } from "./signals.js";

describe("parseSignal", () => {
  it("accepts a name with the SIG prefix", () => {
    const n = parseSignal("SIGKILL");

    assert.equal(n, 9);
  });

  it("accepts a name without the SIG prefix", () => {
    const n = parseSignal("TERM");

    assert.equal(n, 15);
  });

  it("accepts names in lower or mixed case", () => {
    const names = ["sigkill", "kill", "SigHup", "usr1"];

    const numbers = names.map(parseSignal);

    assert.deepEqual(numbers, [9, 9, 1, constants.signals.SIGUSR1]);
  });

  it("accepts a number from 1 to 64 as itself", () => {
    const inputs = ["1", "9", "15", "34", "64"];

    const numbers = inputs.map(parseSignal);

    assert.deepEqual(numbers, [1, 9, 15, 34, 64]);
  });

  for (const bad of ["0", "65", "-9", "9.0", " 9", "", "SIG", "SIGNOPE", "KILLL", "sig kill", "0x9"]) {
    it(`refuses ${JSON.stringify(bad)} with INVALID_ARGUMENT naming the value`, () => {
      const call = (): number => parseSignal(bad);

      assert.throws(call, kataError(Code.InvalidArgument, `unknown signal ${JSON.stringify(bad)}`));
    });
  }
});
