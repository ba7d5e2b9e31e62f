import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, KataError } from "../base/errors.js";
import type { CallOptions } from "../protocol/ttrpc/client.js";
import type { AgentApi } from "./agent-client.js";
import { boundedAgent } from "./deadlines.js";

const networkRpcs = ["updateInterface", "updateRoutes", "addARPNeighbors", "listInterfaces", "listRoutes"];

/** An AgentApi stand-in that records the options of each call and answers as told. */
function recordingAgent(answer: (method: string, o: CallOptions) => Promise<unknown> = () => Promise.resolve({})) {
  const calls: { method: string; o: CallOptions }[] = [];
  const api: Record<string, unknown> = {};
  const methods = ["signalProcess", "createContainer", "waitProcess", "readStdout", "statsContainer"].concat(
    networkRpcs,
  );
  for (const method of methods) {
    api[method] = (_req: unknown, o: CallOptions = {}) => {
      calls.push({ method, o });
      return answer(method, o);
    };
  }
  // CAST: only the methods above are called by these tests.
  return { api: api as unknown as AgentApi, calls };
}

const deadlines = { requestMs: 1234, createContainerMs: 5678, healthCheckMs: 99 };

describe("boundedAgent", () => {
  it("gives an ordinary call the request deadline", async () => {
    const { api, calls } = recordingAgent();
    const agent = boundedAgent(api, { deadlines, life: new AbortController().signal });

    await agent.signalProcess({ containerId: "c1", signal: 9 });

    assert.equal(calls[0]?.o.timeoutMs, 1234);
  });

  it("gives the network calls the request deadline", async () => {
    const { api, calls } = recordingAgent();
    const agent = boundedAgent(api, { deadlines, life: new AbortController().signal });

    await agent.updateInterface({});
    await agent.updateRoutes({});
    await agent.addARPNeighbors({});
    await agent.listInterfaces({});
    await agent.listRoutes({});

    assert.deepEqual(
      calls.map((c) => [c.method, c.o.timeoutMs]),
      networkRpcs.map((m) => [m, 1234]),
    );
  });

  it("gives CreateContainer its own deadline and lets a call's own deadline win", async () => {
    const { api, calls } = recordingAgent();
    const agent = boundedAgent(api, { deadlines, life: new AbortController().signal });

    await agent.createContainer({ containerId: "c1" });
    await agent.statsContainer({ containerId: "c1" }, { timeoutMs: 50 });

    assert.deepEqual(
      calls.map((c) => c.o.timeoutMs),
      [5678, 50],
    );
  });

  it("leaves WaitProcess and the stdio reads without a deadline", async () => {
    const { api, calls } = recordingAgent();
    const agent = boundedAgent(api, { deadlines, life: new AbortController().signal });

    await agent.waitProcess({ containerId: "c1" });
    await agent.readStdout({ containerId: "c1" });

    assert.deepEqual(
      calls.map((c) => c.o.timeoutMs),
      [undefined, undefined],
    );
  });

  it("ends a pending call when the sandbox is lost, with the loss as the reason", async () => {
    const life = new AbortController();
    const { api, calls } = recordingAgent(
      (_m, o) =>
        new Promise((_resolve, reject) => {
          o.signal?.addEventListener("abort", () => {
            reject(o.signal?.reason instanceof Error ? o.signal.reason : new Error("aborted"));
          });
        }),
    );
    const agent = boundedAgent(api, { deadlines, life: life.signal });

    const pending = agent.waitProcess({ containerId: "c1" });
    life.abort(new KataError(Code.Unavailable, "sandbox s1 is lost: its VM exited"));

    await assert.rejects(pending, /sandbox s1 is lost/);
    assert.equal(calls[0]?.o.signal?.aborted, true);
  });

  it("tells its owner which method ran out of time", async () => {
    const missed: string[] = [];
    const { api } = recordingAgent(() => Promise.reject(new KataError(Code.DeadlineExceeded, "timed out")));
    const agent = boundedAgent(api, {
      deadlines,
      life: new AbortController().signal,
      onDeadline: (m) => missed.push(m),
    });

    await assert.rejects(agent.signalProcess({ containerId: "c1" }), /timed out/);

    assert.deepEqual(missed, ["signalProcess"]);
  });

  it("does not report other failures as missed deadlines", async () => {
    const missed: string[] = [];
    const { api } = recordingAgent(() => Promise.reject(new KataError(Code.NotFound, "no such container")));
    const agent = boundedAgent(api, {
      deadlines,
      life: new AbortController().signal,
      onDeadline: (m) => missed.push(m),
    });

    await assert.rejects(agent.signalProcess({ containerId: "c1" }), /no such container/);

    assert.deepEqual(missed, []);
  });
});
