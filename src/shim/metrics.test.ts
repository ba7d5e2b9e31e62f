import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary } from "@bufbuild/protobuf";
import { StatsContainerResponseSchema } from "../protocol/gen/agent_pb.js";
import { MetricsSchema } from "../protocol/gen/containerd/cgroups/v1/metrics_pb.js";
import { statsFromFiles } from "../guest/cgroup-stats.js";
import { metricsAny, metricsTypeUrl, statsToMetrics } from "./metrics.js";

// What our guest reads from a container's cgroup v2 directory (trimmed, real names).
const guestFiles = {
  "cpu.stat":
    "usage_usec 52000\nuser_usec 30000\nsystem_usec 22000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 700\n",
  "memory.stat": [
    "anon 1048576",
    "file 4096000",
    "file_mapped 8192",
    "file_dirty 4096",
    "file_writeback 0",
    "anon_thp 0",
    "inactive_anon 1000",
    "active_anon 2000",
    "inactive_file 3000000",
    "active_file 96000",
    "unevictable 0",
    "pgfault 1234",
    "pgmajfault 5",
  ].join("\n"),
  "memory.current": "5300000\n",
  "memory.peak": "6000000\n",
  "memory.max": "268435456\n",
  "memory.events": "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n",
  "pids.current": "3\n",
  "pids.max": "max\n",
};

function guestStats(): ReturnType<typeof create<typeof StatsContainerResponseSchema>> {
  return create(StatsContainerResponseSchema, { cgroupStats: statsFromFiles(guestFiles) });
}

describe("statsToMetrics (Kata's statsToMetricsV1)", () => {
  it("maps cgroup v2 guest stats to cgroup v1 Metrics: cpu, pids, memory entries and v2 memory.stat names", () => {
    const m = statsToMetrics(guestStats());

    assert.deepEqual(m.pids, { $typeName: "io.containerd.cgroups.v1.PidsStat", current: 3n, limit: 0n });
    const usage = m.cpu?.usage;
    const throttling = m.cpu?.throttling;
    assert.ok(usage !== undefined && throttling !== undefined);
    assert.equal(usage.total, 52_000_000n);
    assert.equal(usage.user, 30_000_000n);
    assert.equal(usage.kernel, 22_000_000n);
    assert.deepEqual(usage.perCpu, []);
    assert.equal(throttling.periods, 10n);
    assert.equal(throttling.throttledPeriods, 2n);
    assert.equal(throttling.throttledTime, 700_000n);
    const mem = m.memory;
    assert.ok(mem?.usage !== undefined);
    assert.equal(mem.usage.usage, 5_300_000n);
    assert.equal(mem.usage.limit, 268_435_456n);
    assert.equal(mem.usage.max, 6_000_000n);
    assert.equal(mem.usage.failcnt, 7n);
    assert.ok(mem.swap !== undefined && mem.kernel !== undefined && mem.kernelTcp !== undefined);
    assert.equal(mem.cache, 4_096_000n);
    assert.equal(mem.totalCache, 4_096_000n);
    assert.equal(mem.rss, 1_048_576n);
    assert.equal(mem.totalRss, 1_048_576n);
    assert.equal(mem.mappedFile, 8192n);
    assert.equal(mem.dirty, 4096n);
    assert.equal(mem.pgFault, 1234n);
    assert.equal(mem.totalPgMajFault, 5n);
    assert.equal(mem.inactiveFile, 3_000_000n);
    // The kubelet's working set: usage - total_inactive_file = 2.3 MB here.
    assert.equal(mem.totalInactiveFile, 3_000_000n);
    assert.equal(mem.usage.usage - mem.totalInactiveFile, 2_300_000n);
    assert.equal(m.blkio, undefined);
    assert.deepEqual(m.hugetlb, []);
  });

  it("prefers cgroup v1 memory.stat names (a Kata v1 agent's) over their v2 counterparts", () => {
    const st = create(StatsContainerResponseSchema, {
      cgroupStats: {
        memoryStats: {
          cache: 1n,
          stats: {
            total_cache: 10n,
            cache: 11n,
            total_rss: 20n,
            rss: 21n,
            total_inactive_file: 30n,
            inactive_file: 31n,
          },
        },
      },
    });

    const mem = statsToMetrics(st).memory;

    assert.ok(mem !== undefined);
    assert.equal(mem.cache, 11n);
    assert.equal(mem.totalCache, 10n);
    assert.equal(mem.rss, 21n);
    assert.equal(mem.totalRss, 20n);
    assert.equal(mem.inactiveFile, 31n);
    assert.equal(mem.totalInactiveFile, 30n);
  });

  it("copies blkio entries, hugetlb by page size (sorted), per-cpu usage and network stats", () => {
    const st = create(StatsContainerResponseSchema, {
      cgroupStats: {
        cpuStats: { cpuUsage: { totalUsage: 9n, percpuUsage: [4n, 5n] } },
        blkioStats: { ioServiceBytesRecursive: [{ major: 254n, minor: 1n, op: "Read", value: 512n }] },
        hugetlbStats: {
          "2MB": { usage: 2n, maxUsage: 4n, failcnt: 1n },
          "1GB": { usage: 0n, maxUsage: 0n, failcnt: 0n },
        },
      },
      networkStats: [{ name: "eth0", rxBytes: 100n, txPackets: 3n }],
    });

    const m = statsToMetrics(st);

    assert.deepEqual(m.cpu?.usage?.perCpu, [4n, 5n]);
    assert.ok(m.blkio !== undefined);
    assert.deepEqual(
      m.blkio.ioServiceBytesRecursive.map((e) => [e.op, e.major, e.minor, e.value]),
      [["Read", 254n, 1n, 512n]],
    );
    assert.deepEqual(m.blkio.sectorsRecursive, []);
    assert.deepEqual(
      m.hugetlb.map((h) => [h.pagesize, h.usage, h.max, h.failcnt]),
      [
        ["1GB", 0n, 0n, 0n],
        ["2MB", 2n, 4n, 1n],
      ],
    );
    assert.deepEqual(
      m.network.map((n) => [n.name, n.rxBytes, n.txPackets]),
      [["eth0", 100n, 3n]],
    );
    assert.equal(m.memory, undefined, "no memory stats from the agent: no memory message");
  });

  it("gives an empty Metrics (network only) when the agent sent no cgroup stats", () => {
    const m = statsToMetrics(create(StatsContainerResponseSchema, {}));

    assert.equal(m.cpu, undefined);
    assert.equal(m.pids, undefined);
    assert.deepEqual(m.network, []);
  });
});

describe("metricsAny", () => {
  it("packs Metrics under containerd's bare type URL, with upstream's field numbers on the wire", () => {
    const st = create(StatsContainerResponseSchema, { cgroupStats: { pidsStats: { current: 3n, limit: 64n } } });

    const any = metricsAny(st);

    assert.equal(any.typeUrl, metricsTypeUrl);
    assert.equal(any.typeUrl, "io.containerd.cgroups.v1.Metrics");
    // Metrics.pids is field 2 (0x12), PidsStat current 1 (0x08) and limit 2 (0x10): as containerd's Go decodes it.
    const at = Buffer.from(any.value).indexOf(Buffer.from([0x12, 0x04, 0x08, 0x03, 0x10, 0x40]));
    assert.ok(at >= 0, Buffer.from(any.value).toString("hex"));
    assert.equal(fromBinary(MetricsSchema, any.value).pids?.limit, 64n);
  });

  it("puts the memory usage entry at field 33 of MemoryStat inside field 4 of Metrics", () => {
    const st = create(StatsContainerResponseSchema, {
      cgroupStats: { memoryStats: { usage: { usage: 5n } } },
    });

    const v = Buffer.from(metricsAny(st).value);

    // MemoryStat's field 33, length-delimited, is the key 0x8a 0x02; in it usage (2) = 5.
    assert.ok(v.includes(Buffer.from([0x8a, 0x02, 0x02, 0x10, 0x05])), v.toString("hex"));
    assert.equal(fromBinary(MetricsSchema, v).memory?.usage?.usage, 5n);
  });
});
