import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkRootless, verbOf } from "./verb.js";

const valueFlags = new Set(["--root", "--log", "--log-format", "--config", "--criu", "--rootless"]);

describe("verbOf", () => {
  it("skips global flags and their values", () => {
    assert.equal(verbOf(["--root", "/r", "--debug", "--log", "/l", "state", "x"], valueFlags), "state");
    assert.equal(verbOf(["--root=/r", "--systemd-cgroup", "--rootless", "auto", "list"], valueFlags), "list");
    assert.equal(verbOf(["--criu", "criu", "--log-format", "json", "create", "--bundle", "."], valueFlags), "create");
  });

  it("finds none without a verb, or after --", () => {
    assert.equal(verbOf([], valueFlags), undefined);
    assert.equal(verbOf(["--help"], valueFlags), undefined);
    assert.equal(verbOf(["--root", "/r"], valueFlags), undefined);
    assert.equal(verbOf(["--", "state"], valueFlags), undefined);
  });

  it("takes a global flag's value as the value, even when it looks like a verb", () => {
    assert.equal(verbOf(["--root", "state", "list"], valueFlags), "list");
  });
});

describe("checkRootless", () => {
  it("accepts runc's false and auto, and no flag", () => {
    assert.equal(checkRootless(undefined), undefined);
    assert.equal(checkRootless("false"), undefined);
    assert.equal(checkRootless("auto"), undefined);
  });

  it("refuses true and other values, naming the flag", () => {
    assert.match(checkRootless("true") ?? "", /^--rootless true: kata-ts runs as root/);
    assert.match(checkRootless("yes") ?? "", /^--rootless "yes": expected true, false or auto/);
  });
});
