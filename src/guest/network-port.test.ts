// BusyboxNetPort's batching on the host's own /bin/ip (read-only commands, no root): outputs split per
// command, a command that may fail marked, one that may not stopping the batch and named.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { NodeProcessRunner } from "../platform/process.js";
import { kataError } from "../../test/helpers/fakes.js";
import { BusyboxNetPort, shellQuote } from "./network-port.js";

const port = new BusyboxNetPort(new NodeProcessRunner());
const skip = existsSync("/bin/ip") ? false : "needs /bin/ip";

describe("BusyboxNetPort", { skip }, () => {
  it("runs commands in one shell and returns each one's output", async () => {
    const [lo, none, again] = await port.run([
      { tool: "ip", args: ["-o", "link", "show", "dev", "lo"] },
      { tool: "ip", args: ["link", "show", "dev", "kt-nosuch0"], mayFail: true },
      { tool: "ip", args: ["-o", "link", "show", "dev", "lo"] },
    ]);

    assert.match(lo?.stdout ?? "", /^1: lo: /);
    assert.equal(none?.failed, true);
    assert.equal(none.stdout, "");
    assert.equal(again?.stdout, lo?.stdout);
  });

  it("stops at a command that may not fail and names it with its stderr", async () => {
    await assert.rejects(
      port.run([
        { tool: "ip", args: ["link", "show", "dev", "kt-nosuch0"] },
        { tool: "ip", args: ["-o", "link"] },
      ]),
      kataError(Code.Internal, "ip link show dev kt-nosuch0", "kt-nosuch0"),
    );
  });

  it("quotes arguments so the shell takes them as they are", () => {
    assert.equal(shellQuote("a'b $(x)"), `'a'\\''b $(x)'`);
  });
});
