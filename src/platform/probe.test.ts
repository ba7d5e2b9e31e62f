import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { memTotalMiBOf } from "./probe.js";

describe("memTotalMiBOf", () => {
  it("reads MemTotal in MiB, rounded down", () => {
    const meminfo = "MemTotal:       24683584 kB\nMemFree:         1000000 kB\n";

    assert.equal(memTotalMiBOf(meminfo), 24105);
  });

  it("is undefined without a MemTotal line in kB", () => {
    assert.equal(memTotalMiBOf("MemFree: 2 kB\n"), undefined);
    assert.equal(memTotalMiBOf("MemTotal: 2 MB\n"), undefined);
  });
});
