// The launcher's command line: which descriptors a child keeps, where the status pipe goes, how its
// report reads. Pure; process.test.ts runs the real launcher.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { keptExtraFds, parseLaunchReport, planLaunch } from "./launcher.js";

describe("keptExtraFds", () => {
  it("keeps nothing past stderr for a string stdio or three entries", () => {
    assert.equal(keptExtraFds("inherit"), 0);
    assert.equal(keptExtraFds(["ignore", "pipe", "pipe"]), 0);
  });

  it("keeps every given entry past stderr, and drops empty trailing ones", () => {
    assert.equal(keptExtraFds(["ignore", "inherit", "inherit", "pipe"]), 1);
    assert.equal(keptExtraFds(["ignore", "pipe", "pipe", "pipe", 7, "ignore", null, undefined]), 2);
  });

  it("refuses an empty slot below a given one: the child would keep what this process inherited there", () => {
    assert.throws(
      () => keptExtraFds(["ignore", "pipe", "pipe", "ignore", "pipe"]),
      kataError(Code.Internal, "stdio[3]"),
    );
  });
});

describe("planLaunch", () => {
  it("runs the program after --, keeping nothing and reporting on the first free descriptor", () => {
    const plan = planLaunch("qemu-system-x86_64", ["-name", "--", "x"], { stdio: ["ignore", "ignore", "pipe"] });

    assert.deepEqual(plan.args, ["--keep", "0", "--status-fd", "3", "--", "qemu-system-x86_64", "-name", "--", "x"]);
    assert.deepEqual(plan.stdio, ["ignore", "ignore", "pipe", "pipe"]);
    assert.equal(plan.statusIndex, 3);
  });

  it("keeps the given extra descriptors and puts the status pipe after them", () => {
    const plan = planLaunch("node", ["relay.js"], { stdio: ["inherit", "ignore", "inherit", "pipe", "ignore"] });

    assert.deepEqual(plan.args.slice(0, 4), ["--keep", "1", "--status-fd", "4"]);
    assert.deepEqual(plan.stdio, ["inherit", "ignore", "inherit", "pipe", "pipe"]);
    assert.equal(plan.statusIndex, 4);
  });

  it("spreads a string stdio over 0-2 and pads a short array as Node would (pipes)", () => {
    assert.deepEqual(planLaunch("sh", [], { stdio: "inherit" }).stdio, ["inherit", "inherit", "inherit", "pipe"]);
    assert.deepEqual(planLaunch("sh", [], { stdio: ["ignore"] }).stdio, ["ignore", undefined, undefined, "pipe"]);
  });

  it("passes argv0 to the launcher, not to Node", () => {
    const plan = planLaunch("/usr/bin/hook", ["a"], { stdio: "pipe", argv0: "my-hook" });

    assert.deepEqual(plan.args, ["--keep", "0", "--status-fd", "3", "--argv0", "my-hook", "--", "/usr/bin/hook", "a"]);
  });
});

describe("parseLaunchReport", () => {
  it("reads an empty report as a program that runs", () => {
    assert.equal(parseLaunchReport(""), undefined);
  });

  it("reads the failed step, its errno name and message", () => {
    assert.deepEqual(parseLaunchReport("exec ENOENT No such file or directory\n"), {
      step: "exec",
      errno: "ENOENT",
      message: "No such file or directory",
    });
    assert.deepEqual(parseLaunchReport("close EMFILE Too many open files\n"), {
      step: "close",
      errno: "EMFILE",
      message: "Too many open files",
    });
  });

  it("keeps an unreadable report as the message of an unknown failure", () => {
    assert.deepEqual(parseLaunchReport("garbage"), { step: "exec", errno: "EUNKNOWN", message: "garbage" });
  });
});
