import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JsonLogger } from "../base/log.js";
import { guestLogEntry, guestLogForwarder, printable } from "./guest-log.js";

describe("guestLogEntry", () => {
  it("keeps an agent line's level and message, lifts its container id and nests the rest", () => {
    const line = JSON.stringify({
      time: "2026-01-01T00:00:00.000Z",
      level: "info",
      msg: "container started",
      source: "agent",
      containerId: "c1",
      pid: 42,
    });
    assert.deepEqual(guestLogEntry(line), {
      level: "info",
      msg: "container started",
      fields: { source: "agent", containerId: "c1", guest: { source: "agent", containerId: "c1", pid: 42 } },
    });
  });

  it("keeps the agent's warn and error levels, and writes its debug lines at info, marked", () => {
    assert.equal(guestLogEntry('{"level":"warn","msg":"m"}').level, "warn");
    assert.equal(guestLogEntry('{"level":"error","msg":"m"}').level, "error");
    const d = guestLogEntry('{"level":"debug","msg":"m"}');
    assert.equal(d.level, "info");
    assert.equal(d.fields["guestLevel"], "debug");
    assert.equal(guestLogEntry('{"level":"info","msg":"m"}').fields["guestLevel"], undefined);
  });

  it("takes any other line as console output at info", () => {
    assert.deepEqual(guestLogEntry("[    1.234] Kernel panic - not syncing"), {
      level: "info",
      msg: "guest console",
      fields: { source: "console", line: "[    1.234] Kernel panic - not syncing" },
    });
    assert.equal(guestLogEntry('{"level":"verbose","msg":"m"}').msg, "guest console");
    assert.equal(guestLogEntry('{"msg":1,"level":"info"}').msg, "guest console");
    assert.equal(guestLogEntry("{not json").fields["source"], "console");
    assert.equal(guestLogEntry("[1,2]").fields["source"], "console");
  });

  it("never lets the guest set the host's fields or a bogus container id", () => {
    const e = guestLogEntry(
      JSON.stringify({ level: "info", msg: "x", sandboxId: "other", component: "host", containerId: "../../etc" }),
    );
    assert.deepEqual(Object.keys(e.fields).sort(), ["guest", "source"]);
    assert.equal(e.fields["source"], "agent");
  });

  it("escapes control characters in messages and console lines", () => {
    assert.equal(guestLogEntry("a\u001b[2Jb\rc").fields["line"], "a\\u001b[2Jb\\u000dc");
    assert.equal(guestLogEntry('{"level":"info","msg":"x\\ny"}').msg, "x\\u000ay");
    assert.equal(printable("tab\tkept"), "tab\tkept");
  });
});

describe("guestLogForwarder", () => {
  function capture(): { lines: Record<string, unknown>[]; log: JsonLogger } {
    const lines: Record<string, unknown>[] = [];
    const log = new JsonLogger((l) => lines.push(JSON.parse(l) as Record<string, unknown>), {
      level: "debug",
      fields: { sandboxId: "sb1" },
    });
    return { lines, log };
  }

  it("writes each line with the sandbox id, which the guest cannot replace", () => {
    const { lines, log } = capture();
    const forward = guestLogForwarder(log);
    forward(JSON.stringify({ level: "info", msg: "sandbox created", sandboxId: "forged" }));
    forward("plain line");
    const [agent, plain, more] = lines;
    assert.ok(agent !== undefined && plain !== undefined && more === undefined);
    assert.equal(agent["sandboxId"], "sb1");
    assert.equal(agent["msg"], "sandbox created");
    assert.deepEqual(agent["guest"], { sandboxId: "forged" });
    assert.equal(plain["line"], "plain line");
    assert.equal(plain["sandboxId"], "sb1");
  });

  it("stops at its budget, saying so once", () => {
    const { lines, log } = capture();
    const forward = guestLogForwarder(log, 25);
    for (let i = 0; i < 10; i++) forward("0123456789");
    assert.equal(lines.length, 3);
    const last = lines.at(-1);
    assert.equal(last?.["level"], "warn");
    assert.match(String(last["msg"]), /budget used up/);
  });
});
