import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseKeyValues, parseLimit, statsFromFiles } from "./cgroup-stats.js";

describe("cgroup v2 stats", () => {
  it("parses key/value files and limits", () => {
    assert.deepEqual(
      [...parseKeyValues("usage_usec 12\nuser_usec 7\nbad line here\n")],
      [
        ["usage_usec", 12n],
        ["user_usec", 7n],
      ],
    );
    assert.equal(parseLimit("max\n"), 0n);
    assert.equal(parseLimit("1048576\n"), 1048576n);
  });

  it("converts microseconds to nanoseconds and fills memory and pids", () => {
    const s = statsFromFiles({
      "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 3\nnr_throttled 1\nthrottled_usec 20\n",
      "memory.current": "4096\n",
      "memory.max": "max\n",
      "memory.stat": "anon 100\nfile 200\n",
      "pids.current": "2\n",
      "pids.max": "64\n",
    });

    assert.deepEqual(s.cpuStats, {
      cpuUsage: { totalUsage: 1_500_000n, usageInUsermode: 1_000_000n, usageInKernelmode: 500_000n },
      throttlingData: { periods: 3n, throttledPeriods: 1n, throttledTime: 20_000n },
    });
    assert.equal(s.memoryStats?.cache, 200n);
    assert.deepEqual(s.memoryStats.usage, { usage: 4096n, maxUsage: 0n, failcnt: 0n, limit: 0n });
    assert.deepEqual(s.pidsStats, { current: 2n, limit: 64n });
  });
});
