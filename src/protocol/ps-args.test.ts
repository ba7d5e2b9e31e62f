import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, KataError } from "../base/errors.js";
import { checkPsArgs, keepPsRows, maxPsArgBytes, maxPsArgs, psPidColumn } from "./ps-args.js";

const invalid = (fn: () => unknown, re: RegExp): void => {
  assert.throws(fn, (e: unknown) => e instanceof KataError && e.code === Code.InvalidArgument && re.test(e.message));
};

// What busybox ps prints for `ps -o user,pid,comm` (PID not first, right-aligned).
const busyboxTable = [
  "USER       PID COMMAND",
  "root         1 init",
  "root        42 kata-ts-agent",
  "root       107 sleep",
  "root       108 sh",
  "root       999 ps",
  "",
].join("\n");

describe("checkPsArgs", () => {
  it("accepts what ps options need", () => {
    checkPsArgs([]);
    checkPsArgs(["-ef"]);
    checkPsArgs(["-o", "pid,comm"]);
    checkPsArgs(["-o", "pid=ID,user,%cpu,args:20", "-T"]);
  });

  it("refuses too many options, too long ones and shell or path characters, naming the option", () => {
    invalid(() => {
      checkPsArgs(Array.from({ length: maxPsArgs + 1 }, () => "-e"));
    }, /17 given, at most 16/);
    checkPsArgs(Array.from({ length: maxPsArgs }, () => "-e"));
    invalid(() => {
      checkPsArgs(["-o", "p".repeat(maxPsArgBytes + 1)]);
    }, /ps option 2: 65 bytes, at most 64/);
    checkPsArgs(["p".repeat(maxPsArgBytes)]);
    for (const bad of ["-o pid", "$(reboot)", "a;b", "../x", "/bin/sh", "pid\n", "", "é"]) {
      invalid(() => {
        checkPsArgs(["-e", bad]);
      }, /ps option 2 .*only letters, digits/);
    }
  });
});

describe("ps PID column", () => {
  it("finds PID wherever ps puts it, not PPID", () => {
    assert.equal(psPidColumn("PID   USER     STAT   RSS COMMAND"), 0);
    assert.equal(psPidColumn("  PPID USER   PID COMMAND"), 2);
  });

  it("refuses a header without PID (options that drop it, or a renamed or absent header)", () => {
    invalid(() => psPidColumn("COMMAND"), /no PID column .*keep pid/);
    invalid(() => psPidColumn("ID    COMMAND"), /no PID column/);
    invalid(() => psPidColumn("    1 init"), /no PID column/);
    invalid(() => keepPsRows("PPID COMMAND\n    0 init\n", [1]), /no PID column/);
  });

  it("keeps the header and the container's rows only, by the PID column", () => {
    assert.equal(
      keepPsRows(busyboxTable, [107, 108, 5000]),
      "USER       PID COMMAND\nroot       107 sleep\nroot       108 sh\n",
    );
    assert.equal(keepPsRows(busyboxTable, []), "USER       PID COMMAND\n");
  });
});
