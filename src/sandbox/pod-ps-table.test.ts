import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, KataError } from "../base/errors.js";
import { keepPsRows } from "../protocol/ps-args.js";
import { parsePsTable } from "./pod-guest-ops.js";

const invalid = (fn: () => unknown, re: RegExp): void => {
  assert.throws(fn, (e: unknown) => e instanceof KataError && e.code === Code.InvalidArgument && re.test(e.message));
};

// busybox's `ps -o user,pid,comm`: PID is not the first column.
const busyboxTable = "USER       PID COMMAND\nroot         1 init\nroot       107 sleep\n";

describe("parsePsTable (the guest's ps table, on the host)", () => {
  it("reads each row's pid from the PID column of the guest's table", () => {
    const t = parsePsTable(keepPsRows(busyboxTable, [107]));
    assert.deepEqual(t, { header: ["USER", "PID", "COMMAND"], rows: [{ pid: 107, fields: ["root", "107", "sleep"] }] });
    assert.deepEqual(parsePsTable("USER PID COMMAND\n"), { header: ["USER", "PID", "COMMAND"], rows: [] });
    invalid(() => parsePsTable("USER COMMAND\nroot sleep\n"), /no PID column/);
  });
});
