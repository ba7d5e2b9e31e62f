import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { agentLogLevel } from "./log-level.js";

describe("agentLogLevel", () => {
  it("is info without agent.log", () => {
    assert.equal(agentLogLevel("console=ttyS0 quiet panic=1\n", undefined), "info");
  });
  it("takes agent.log=debug from the kernel command line (enable_debug)", () => {
    assert.equal(agentLogLevel("console=ttyS0 agent.log=debug panic=1\n", undefined), "debug");
  });
  it("maps Kata's level names and lets the last parameter win", () => {
    assert.equal(agentLogLevel("agent.log=debug agent.log=warning", undefined), "warn");
    assert.equal(agentLogLevel("agent.log=TRACE", undefined), "debug");
    assert.equal(agentLogLevel("agent.log=critical", undefined), "error");
  });
  it("ignores unknown levels and look-alike parameters", () => {
    assert.equal(agentLogLevel("agent.log=loud xagent.log=debug agent.logx=debug", undefined), "info");
  });
  it("still takes KATA_TS_AGENT_LOG=debug", () => {
    assert.equal(agentLogLevel("", "debug"), "debug");
  });
});
