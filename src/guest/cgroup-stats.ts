// Container resource usage from the guest's cgroup v2 files, in the agent API's CgroupStats shape
// (Kata's is cgroup v1 shaped: microseconds become nanoseconds, "max" becomes 0 = unlimited).

import { readFile } from "node:fs/promises";
import path from "node:path";
import { ignoreErrno } from "../base/errors.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CgroupStatsSchema } from "../protocol/gen/agent_pb.js";

export type CgroupStatsInit = MessageInitShape<typeof CgroupStatsSchema>;

/** "key value" lines (cpu.stat, memory.stat) into a map; unparsable lines are skipped. */
export function parseKeyValues(text: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const line of text.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k === undefined || v === undefined || !/^\d+$/.test(v)) continue;
    out.set(k, BigInt(v));
  }
  return out;
}

/** A single-value file: a number, or "max" (0 here: unlimited). */
export function parseLimit(text: string): bigint {
  const t = text.trim();
  return /^\d+$/.test(t) ? BigInt(t) : 0n;
}

export function statsFromFiles(files: Readonly<Record<string, string | undefined>>): CgroupStatsInit {
  const cpu = parseKeyValues(files["cpu.stat"] ?? "");
  const mem = parseKeyValues(files["memory.stat"] ?? "");
  const usec = (k: string): bigint => (cpu.get(k) ?? 0n) * 1000n;
  return {
    cpuStats: {
      cpuUsage: {
        totalUsage: usec("usage_usec"),
        usageInUsermode: usec("user_usec"),
        usageInKernelmode: usec("system_usec"),
      },
      throttlingData: {
        periods: cpu.get("nr_periods") ?? 0n,
        throttledPeriods: cpu.get("nr_throttled") ?? 0n,
        throttledTime: usec("throttled_usec"),
      },
    },
    memoryStats: {
      cache: mem.get("file") ?? 0n,
      usage: {
        usage: parseLimit(files["memory.current"] ?? ""),
        maxUsage: parseLimit(files["memory.peak"] ?? ""),
        failcnt: parseKeyValues(files["memory.events"] ?? "").get("max") ?? 0n,
        limit: parseLimit(files["memory.max"] ?? ""),
      },
      stats: Object.fromEntries(mem),
    },
    pidsStats: { current: parseLimit(files["pids.current"] ?? ""), limit: parseLimit(files["pids.max"] ?? "") },
  };
}

const statFiles = [
  "cpu.stat",
  "memory.stat",
  "memory.current",
  "memory.peak",
  "memory.max",
  "memory.events",
  "pids.current",
  "pids.max",
];

/** Reads a cgroup directory; a missing controller file just leaves its numbers at zero. */
export async function readCgroupStats(cgroupDir: string): Promise<CgroupStatsInit> {
  const files: Record<string, string | undefined> = {};
  for (const f of statFiles) {
    files[f] = await readFile(path.join(cgroupDir, f), "utf8").catch(ignoreErrno("ENOENT"));
  }
  return statsFromFiles(files);
}
