// isServiceRunning: a saved service pid counts only while it still names that sandbox's service (after
// a crash or a reboot the pid may belong to anything).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isServiceRunning, type ProcessTable } from "./stale.js";

function table(cmdlines: Readonly<Record<number, string[]>>): ProcessTable {
  return {
    cmdline: (pid) => Promise.resolve(cmdlines[pid]),
    exe: () => Promise.resolve(undefined),
    kill: () => undefined,
  };
}

const service = ["node", "/opt/kata-ts/dist/src/cli/shim-main.js", "serve", "--root", "/run/k", "--id", "sb1"];

describe("isServiceRunning", () => {
  it("is true for the sandbox's own service", async () => {
    assert.equal(await isServiceRunning(table({ 42: service }), 42, "/run/k", "sb1"), true);
  });

  it("is false when the pid is gone", async () => {
    assert.equal(await isServiceRunning(table({}), 42, "/run/k", "sb1"), false);
  });

  it("is false when the pid now belongs to another program", async () => {
    assert.equal(await isServiceRunning(table({ 42: ["sleep", "1000"] }), 42, "/run/k", "sb1"), false);
  });

  it("is false for the service of another sandbox or another root", async () => {
    const other = table({ 42: service });

    assert.equal(await isServiceRunning(other, 42, "/run/k", "sb2"), false);
    assert.equal(await isServiceRunning(other, 42, "/run/other", "sb1"), false);
  });
});
