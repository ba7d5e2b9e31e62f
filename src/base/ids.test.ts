import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "./errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { checkId, maxIdLength } from "./ids.js";

describe("checkId", () => {
  it("accepts an id as long as one path component leaves room for", () => {
    const id = "a".repeat(maxIdLength);

    assert.equal(checkId("container id", id), id);
  });

  it("refuses a longer id, naming what it is, its length and the limit", () => {
    assert.throws(
      () => checkId("sandbox id", "a".repeat(maxIdLength + 1)),
      kataError(Code.InvalidArgument, "invalid sandbox id", `${maxIdLength + 1} characters, more than ${maxIdLength}`),
    );
  });

  it("accepts what runc accepts: one character, and _ + - . after the first", () => {
    for (const good of ["x", "7", "_", "a+b", "a.b-c_d", "+x"]) assert.equal(checkId("container id", good), good);
  });

  it("refuses path separators, dot names and a leading dash", () => {
    for (const bad of ["a/b", "..", ".", ".hidden", "-rf", "", "a b", "a\nb", "a:b"]) {
      assert.throws(() => checkId("exec id", bad), kataError(Code.InvalidArgument, "invalid exec id"));
    }
  });
});
