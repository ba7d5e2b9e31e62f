import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { checkPreserveFds } from "./preserve-fds.js";

describe("checkPreserveFds", () => {
  it("accepts the flag's absence and 0 (podman and conmon pass --preserve-fds 0)", () => {
    checkPreserveFds(undefined);
    checkPreserveFds("0");
  });

  it("refuses N > 0, saying a VM cannot hold host descriptors", () => {
    assert.throws(
      () => {
        checkPreserveFds("2");
      },
      kataError(Code.InvalidArgument, "--preserve-fds 2", "cannot pass host file descriptors", "only 0"),
    );
  });

  it("refuses what is not a count", () => {
    assert.throws(
      () => {
        checkPreserveFds("-1");
      },
      kataError(Code.InvalidArgument, '--preserve-fds "-1"', "expected a number"),
    );
  });
});
