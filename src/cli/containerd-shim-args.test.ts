import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { parseShimArgs } from "./containerd-shim-args.js";

describe("parseShimArgs", () => {
  it("reads containerd's start command line", () => {
    const a = parseShimArgs([
      "-namespace",
      "default",
      "-address",
      "/run/containerd/containerd.sock",
      "-publish-binary",
      "/usr/bin/containerd",
      "-id",
      "p1",
      "start",
    ]);
    assert.equal(a.action, "start");
    assert.equal(a.flags.get("namespace"), "default");
    assert.equal(a.flags.get("id"), "p1");
    assert.equal(a.flags.get("publish-binary"), "/usr/bin/containerd");
  });

  it("takes -name=value, --name and booleans", () => {
    const a = parseShimArgs(["--id=x", "-debug", "-bundle", "/b", "delete"]);
    assert.equal(a.flags.get("id"), "x");
    assert.equal(a.flags.get("debug"), true);
    assert.equal(a.flags.get("bundle"), "/b");
    assert.equal(a.action, "delete");
    assert.equal(parseShimArgs(["-v"]).flags.get("v"), true);
  });

  it("refuses an unknown flag, a flag without its value and two actions, with usage", () => {
    assert.throws(() => parseShimArgs(["-bogus", "start"]), kataError(Code.InvalidArgument, "unknown flag -bogus"));
    assert.throws(() => parseShimArgs(["-id"]), kataError(Code.InvalidArgument, "flag -id needs a value"));
    assert.throws(() => parseShimArgs(["start", "delete"]), kataError(Code.InvalidArgument, "one action expected"));
    assert.throws(() => parseShimArgs(["-x"]), /usage: containerd-shim-kata-ts-v2/);
  });
});
