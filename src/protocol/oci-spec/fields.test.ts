// The range checks and zero-value readers every section of the OCI <-> grpc.Spec mapping relies on.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isKataError } from "../../base/errors.js";
import { each, group, i64, list, num, nz, prune, u32, u64 } from "./fields.js";

const invalidAt = (path: string) => (e: unknown) =>
  isKataError(e, "INVALID_ARGUMENT") && e.details["path"] === path && e.message.startsWith(`oci spec ${path}:`);

describe("oci-spec number conversions", () => {
  it("i64 and u64 carry safe integers and refuse the rest, naming the path", () => {
    assert.equal(i64(-1, "a"), -1n);
    assert.equal(u64(Number.MAX_SAFE_INTEGER, "a"), 9007199254740991n);

    assert.throws(() => i64(2 ** 53, "x.limit"), invalidAt("x.limit"));
    assert.throws(() => i64(1.5, "x.limit"), invalidAt("x.limit"));
    assert.throws(() => u64(-1, "x.rate"), invalidAt("x.rate"));
  });

  it("u32 accepts 0..2^32-1 only", () => {
    assert.equal(u32(0xffff_ffff, "a"), 0xffff_ffff);

    assert.throws(() => u32(2 ** 32, "uid"), invalidAt("uid"));
    assert.throws(() => u32(-1, "uid"), invalidAt("uid"));
  });

  it("num refuses a wire value outside Number's safe range", () => {
    assert.equal(num(-5n, "a"), -5);

    assert.throws(() => num(2n ** 53n, "rlimits[0].hard"), invalidAt("rlimits[0].hard"));
  });
});

describe("oci-spec zero-value readers", () => {
  it("turn proto3 zero values into absent fields", () => {
    assert.equal(nz(0n, "a"), undefined);
    assert.equal(nz(7n, "a"), 7);
    assert.equal(list([]), undefined);
    assert.equal(
      each([], (x: number) => x),
      undefined,
    );
  });

  it("copy lists so the result never aliases its input", () => {
    const input = ["a"];

    const out = list(input);

    assert.deepEqual(out, ["a"]);
    assert.notEqual(out, input);
  });

  it("prune drops undefined keys; group also drops an object left empty", () => {
    assert.deepEqual(prune<{ a?: number; b: string }>({ a: undefined, b: "" }), { b: "" });
    assert.equal(group<{ a?: number }>({ a: undefined }), undefined);
    assert.deepEqual(group<{ a?: number }>({ a: 1 }), { a: 1 });
  });
});
