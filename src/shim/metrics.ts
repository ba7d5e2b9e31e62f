// The agent's container stats as containerd's cgroup v1 Metrics, the message `ctr task metrics` and the
// CRI plugin's ContainerStats decode (containerd 1.6 switches on the Any's type: cgroups v1 or v2
// Metrics, nothing else). The mapping is Kata's shim's (statsToMetricsV1): entries copied field by
// field, memory.stat picked by name. Our guest reports cgroup v2's memory.stat names, Kata's v1 agent
// the v1 ones: a v1 name wins when present, else its v2 counterpart.

import { create, toBinary } from "@bufbuild/protobuf";
import { AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import type { BlkioStatsEntry, MemoryData, MemoryStats, StatsContainerResponse } from "../protocol/gen/agent_pb.js";
import {
  MetricsSchema,
  type BlkIOEntrySchema,
  type MemoryEntrySchema,
  type MemoryStat,
  type MemoryStatSchema,
  type Metrics,
} from "../protocol/gen/containerd/cgroups/v1/metrics_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";

/** containerd's type URL for the message: typeurl's bare message name, as Kata's shim sends it. */
export const metricsTypeUrl = "io.containerd.cgroups.v1.Metrics";

type Init<S extends Parameters<typeof create>[0]> = MessageInitShape<S>;
/** MemoryStat's counter fields (the uint64 ones). */
type Counter = Exclude<
  { [K in keyof MemoryStat]: MemoryStat[K] extends bigint ? K : never }[keyof MemoryStat],
  undefined
>;

/**
 * memory.stat entries: the Metrics field, then the memory.stat names it is read from, first present
 * wins (cgroup v1's name first, then cgroup v2's). v2's memory.stat is hierarchical already, so a
 * total_* field falls back to the plain names too.
 */
const memoryStatNames: readonly (readonly [Counter, ...string[]])[] = [
  ["rss", "rss", "anon"],
  ["rssHuge", "rss_huge", "anon_thp"],
  ["mappedFile", "mapped_file", "file_mapped"],
  ["dirty", "dirty", "file_dirty"],
  ["writeback", "writeback", "file_writeback"],
  ["pgPgIn", "pgpgin"],
  ["pgPgOut", "pgpgout"],
  ["pgFault", "pgfault"],
  ["pgMajFault", "pgmajfault"],
  ["inactiveAnon", "inactive_anon"],
  ["activeAnon", "active_anon"],
  ["inactiveFile", "inactive_file"],
  ["activeFile", "active_file"],
  ["unevictable", "unevictable"],
  ["hierarchicalMemoryLimit", "hierarchical_memory_limit"],
  ["hierarchicalSwapLimit", "hierarchical_memsw_limit"],
  ["totalCache", "total_cache", "cache", "file"],
  ["totalRss", "total_rss", "rss", "anon"],
  ["totalRssHuge", "total_rss_huge", "rss_huge", "anon_thp"],
  ["totalMappedFile", "total_mapped_file", "mapped_file", "file_mapped"],
  ["totalDirty", "total_dirty", "dirty", "file_dirty"],
  ["totalWriteback", "total_writeback", "writeback", "file_writeback"],
  ["totalPgPgIn", "total_pgpgin", "pgpgin"],
  ["totalPgPgOut", "total_pgpgout", "pgpgout"],
  ["totalPgFault", "total_pgfault", "pgfault"],
  ["totalPgMajFault", "total_pgmajfault", "pgmajfault"],
  ["totalInactiveAnon", "total_inactive_anon", "inactive_anon"],
  ["totalActiveAnon", "total_active_anon", "active_anon"],
  ["totalInactiveFile", "total_inactive_file", "inactive_file"],
  ["totalActiveFile", "total_active_file", "active_file"],
  ["totalUnevictable", "total_unevictable", "unevictable"],
];

function entry(d: MemoryData | undefined): Init<typeof MemoryEntrySchema> {
  return { limit: d?.limit ?? 0n, usage: d?.usage ?? 0n, max: d?.maxUsage ?? 0n, failcnt: d?.failcnt ?? 0n };
}

function memoryOf(m: MemoryStats): Init<typeof MemoryStatSchema> {
  const out: Init<typeof MemoryStatSchema> & Partial<Record<Counter, bigint>> = {
    // The agent's own cache figure (cgroup v1's cache, or v2's file) when memory.stat has none.
    cache: m.stats["cache"] ?? m.stats["total_cache"] ?? m.cache,
    // Always set, as Kata: `ctr task metrics` dereferences usage whenever memory is present.
    usage: entry(m.usage),
    swap: entry(m.swapUsage),
    kernel: entry(m.kernelUsage),
    kernelTcp: entry(undefined),
  };
  for (const [field, ...names] of memoryStatNames) {
    const v = names.map((n) => m.stats[n]).find((x) => x !== undefined);
    if (v !== undefined) out[field] = v;
  }
  return out;
}

function blkio(entries: readonly BlkioStatsEntry[]): Init<typeof BlkIOEntrySchema>[] {
  return entries.map((e) => ({ op: e.op, major: e.major, minor: e.minor, value: e.value }));
}

/** Kata's statsToMetricsV1: the agent's answer as containerd's cgroup v1 Metrics. */
export function statsToMetrics(st: StatsContainerResponse): Metrics {
  const cg = st.cgroupStats;
  const network = st.networkStats.map((n) => ({
    name: n.name,
    rxBytes: n.rxBytes,
    rxPackets: n.rxPackets,
    rxErrors: n.rxErrors,
    rxDropped: n.rxDropped,
    txBytes: n.txBytes,
    txPackets: n.txPackets,
    txErrors: n.txErrors,
    txDropped: n.txDropped,
  }));
  if (cg === undefined) return create(MetricsSchema, { network });
  const cpu = cg.cpuStats;
  const b = cg.blkioStats;
  return create(MetricsSchema, {
    // Sorted by page size: a map's order is not the wire's business, but tests and diffs like one.
    hugetlb: Object.entries(cg.hugetlbStats)
      .sort(([a], [z]) => (a < z ? -1 : a > z ? 1 : 0))
      .map(([pagesize, h]) => ({ usage: h.usage, max: h.maxUsage, failcnt: h.failcnt, pagesize })),
    pids: { current: cg.pidsStats?.current ?? 0n, limit: cg.pidsStats?.limit ?? 0n },
    cpu: {
      usage: {
        total: cpu?.cpuUsage?.totalUsage ?? 0n,
        kernel: cpu?.cpuUsage?.usageInKernelmode ?? 0n,
        user: cpu?.cpuUsage?.usageInUsermode ?? 0n,
        perCpu: [...(cpu?.cpuUsage?.percpuUsage ?? [])],
      },
      throttling: {
        periods: cpu?.throttlingData?.periods ?? 0n,
        throttledPeriods: cpu?.throttlingData?.throttledPeriods ?? 0n,
        throttledTime: cpu?.throttlingData?.throttledTime ?? 0n,
      },
    },
    ...(cg.memoryStats === undefined ? {} : { memory: memoryOf(cg.memoryStats) }),
    ...(b === undefined
      ? {}
      : {
          blkio: {
            ioServiceBytesRecursive: blkio(b.ioServiceBytesRecursive),
            ioServicedRecursive: blkio(b.ioServicedRecursive),
            ioQueuedRecursive: blkio(b.ioQueuedRecursive),
            ioServiceTimeRecursive: blkio(b.ioServiceTimeRecursive),
            ioWaitTimeRecursive: blkio(b.ioWaitTimeRecursive),
            ioMergedRecursive: blkio(b.ioMergedRecursive),
            ioTimeRecursive: blkio(b.ioTimeRecursive),
            sectorsRecursive: blkio(b.sectorsRecursive),
          },
        }),
    network,
  });
}

/** The Any a shim's Stats answers with. */
export function metricsAny(st: StatsContainerResponse): Any {
  return create(AnySchema, { typeUrl: metricsTypeUrl, value: toBinary(MetricsSchema, statsToMetrics(st)) });
}
