import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import { eventLine, parseGoDuration, runcStats } from "./runc-events.js";

const invalid =
  (re: RegExp) =>
  (e: unknown): boolean =>
    isKataError(e, Code.InvalidArgument) && re.test(e.message);

describe("Go durations", () => {
  it("parses time.ParseDuration's forms to milliseconds", () => {
    assert.equal(parseGoDuration("1s", "--interval"), 1000);
    assert.equal(parseGoDuration("500ms", "--interval"), 500);
    assert.equal(parseGoDuration("1m30s", "--interval"), 90_000);
    assert.equal(parseGoDuration("1.5h", "--interval"), 5_400_000);
    assert.equal(parseGoDuration("250us", "--interval"), 0.25);
    assert.equal(parseGoDuration("100µs", "--interval"), 0.1);
    assert.equal(parseGoDuration("0", "--interval"), 0);
    assert.equal(parseGoDuration("-2s", "--interval"), -2000);
  });

  it("refuses what Go refuses, naming the flag", () => {
    assert.throws(() => parseGoDuration("5", "--interval"), invalid(/--interval "5": missing unit/));
    assert.throws(() => parseGoDuration("1d", "--interval"), invalid(/unknown unit "d"/));
    assert.throws(() => parseGoDuration("s", "--interval"), invalid(/not a duration/));
    assert.throws(() => parseGoDuration("1s ", "--interval"), invalid(/not a duration/));
    assert.throws(() => parseGoDuration("", "--interval"), invalid(/not a duration/));
  });
});

/** The agent's StatsContainerResponse as protobuf JSON (64-bit integers as strings). */
const agentStats = {
  cgroupStats: {
    cpuStats: {
      cpuUsage: {
        totalUsage: "43982838",
        percpuUsage: ["7751469", "36231369"],
        usageInKernelmode: "10000000",
        usageInUsermode: "20000000",
      },
      throttlingData: { periods: "4", throttledPeriods: "1", throttledTime: "300" },
    },
    memoryStats: {
      cache: "4096",
      usage: { usage: "540672", maxUsage: "2740224", limit: "9223372036854771712" },
      swapUsage: { usage: "540672", limit: "9223372036854771712" },
      stats: { anon: "8192", file: "0" },
    },
    pidsStats: { current: "2", limit: "64" },
    blkioStats: { ioServiceBytesRecursive: [{ major: "254", op: "Read", value: "4096" }] },
    hugetlbStats: { "2MB": { usage: "0", failcnt: "0" } },
  },
};

describe("runc stats events", () => {
  it("converts the agent's stats to runc's types (data.cpu.usage.total, memory, pids)", () => {
    const line = eventLine("stats", "c1", runcStats(agentStats));
    const ev = JSON.parse(line) as { type: string; id: string; data: Record<string, Record<string, unknown>> };

    assert.equal(ev.type, "stats");
    assert.equal(ev.id, "c1");
    assert.deepEqual(ev.data["cpu"], {
      usage: { kernel: 10000000, user: 20000000, total: 43982838, percpu: [7751469, 36231369] },
      throttling: { periods: 4, throttledPeriods: 1, throttledTime: 300 },
    });
    assert.deepEqual(ev.data["pids"], { current: 2, limit: 64 });
    assert.deepEqual(ev.data["blkio"], { ioServiceBytesRecursive: [{ major: 254, op: "Read", value: 4096 }] });
    assert.deepEqual(ev.data["hugetlb"], { "2MB": { failcnt: 0 } });
    const mem = ev.data["memory"] as Record<string, unknown>;
    assert.equal(mem["cache"], 4096);
    assert.deepEqual(mem["kernel"], { limit: 0, failcnt: 0 });
    assert.deepEqual(mem["raw"], { anon: 8192, file: 0 });
  });

  it("writes 64-bit counters exactly, as Go does", () => {
    const line = eventLine("stats", "c1", runcStats(agentStats));

    assert.match(line, /"usage":\{"limit":9223372036854771712,"usage":540672,"max":2740224,"failcnt":0\}/);
    assert.ok(line.endsWith("}\n"));
  });

  it("gives runc's zero values for stats the agent left out", () => {
    assert.deepEqual(JSON.parse(eventLine("stats", "c1", runcStats({}))), {
      type: "stats",
      id: "c1",
      data: {
        cpu: { usage: { kernel: 0, user: 0 }, throttling: {} },
        memory: { usage: { limit: 0, failcnt: 0 }, swap: { limit: 0, failcnt: 0 }, kernel: { limit: 0, failcnt: 0 } },
        pids: {},
        blkio: {},
        hugetlb: {},
      },
    });
  });

  it("prints an oom event without data", () => {
    assert.equal(eventLine("oom", "c1"), '{"type":"oom","id":"c1"}\n');
  });
});
