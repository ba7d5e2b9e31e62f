// `kata-ts events` in runc's JSON: the agent's cgroup stats (containerd/Kata's CgroupStats, as protobuf
// JSON) converted to runc's types/events.go Stats, as Kata 1.x's `kata-runtime events` did, and Go
// durations for --interval. Pure, so the shapes are tested without a VM.

import { Code, KataError } from "../base/errors.js";

const goUnitsMs: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's time.ParseDuration (`1s`, `500ms`, `1m30s`, `1.5h`), in milliseconds; INVALID_ARGUMENT naming `what`. */
export function parseGoDuration(text: string, what: string): number {
  const bad = (why: string): KataError =>
    new KataError(
      Code.InvalidArgument,
      `${what} ${JSON.stringify(text)}: ${why} (a Go duration such as 1s, 500ms, 2m)`,
    );
  if (text.length > 64) throw bad("too long");
  if (text === "0") return 0;
  const body = /^[+-]/.test(text) ? text.slice(1) : text;
  if (body === "") throw bad("not a duration");
  const re = /(\d+\.?\d*|\.\d+)([a-zµμ]+)/gy;
  let total = 0;
  let at = 0;
  for (let m = re.exec(body); m !== null; m = re.exec(body)) {
    const unit = goUnitsMs[m[2] ?? ""];
    if (unit === undefined) throw bad(`unknown unit ${JSON.stringify(m[2])}`);
    total += Number(m[1]) * unit;
    at = re.lastIndex;
  }
  if (at !== body.length) throw bad(/^\d+$/.test(body) ? "missing unit" : "not a duration");
  return text.startsWith("-") ? -total : total;
}

/** A uint64 of the agent's JSON (protobuf JSON writes 64-bit integers as strings), kept exact. */
export type U64 = bigint;

function u64(v: unknown): U64 {
  if (typeof v === "string" && /^\d{1,20}$/.test(v)) return BigInt(v);
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  return 0n;
}

function obj(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** Go's `omitempty`: a zero number, an empty list or object is left out. */
function omitEmpty(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === 0n || v === "" || v === undefined) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    out[k] = v;
  }
  return out;
}

/** runc's MemoryEntry: limit and failcnt always, usage and max when not zero. */
function memoryEntry(v: unknown): Record<string, unknown> {
  const m = obj(v);
  return {
    limit: u64(m["limit"]),
    ...omitEmpty({ usage: u64(m["usage"]), max: u64(m["maxUsage"]) }),
    failcnt: u64(m["failcnt"]),
  };
}

const blkioKeys: Readonly<Record<string, string>> = {
  ioServiceBytesRecursive: "ioServiceBytesRecursive",
  ioServicedRecursive: "ioServicedRecursive",
  ioQueuedRecursive: "ioQueueRecursive",
  ioServiceTimeRecursive: "ioServiceTimeRecursive",
  ioWaitTimeRecursive: "ioWaitTimeRecursive",
  ioMergedRecursive: "ioMergedRecursive",
  ioTimeRecursive: "ioTimeRecursive",
  sectorsRecursive: "sectorsRecursive",
};

/**
 * runc's Stats from the agent's StatsContainerResponse (protobuf JSON: cgroupStats.cpuStats.cpuUsage…).
 * What the guest does not measure is left at runc's zero values; cpuset and intel_rdt are not measured.
 */
export function runcStats(agent: unknown): Record<string, unknown> {
  const cg = obj(obj(agent)["cgroupStats"]);
  const cpu = obj(cg["cpuStats"]);
  const usage = obj(cpu["cpuUsage"]);
  const thr = obj(cpu["throttlingData"]);
  const mem = obj(cg["memoryStats"]);
  const pids = obj(cg["pidsStats"]);
  const blk = obj(cg["blkioStats"]);
  const raw: Record<string, U64> = {};
  for (const [k, v] of Object.entries(obj(mem["stats"]))) raw[k] = u64(v);
  const blkio: Record<string, unknown> = {};
  for (const [from, to] of Object.entries(blkioKeys)) {
    const entries = list(blk[from]).map((e) => {
      const x = obj(e);
      return omitEmpty({ major: u64(x["major"]), minor: u64(x["minor"]), op: x["op"], value: u64(x["value"]) });
    });
    if (entries.length > 0) blkio[to] = entries;
  }
  const hugetlb: Record<string, unknown> = {};
  for (const [size, v] of Object.entries(obj(cg["hugetlbStats"]))) {
    const h = obj(v);
    hugetlb[size] = { ...omitEmpty({ usage: u64(h["usage"]), max: u64(h["maxUsage"]) }), failcnt: u64(h["failcnt"]) };
  }
  return {
    cpu: {
      usage: {
        kernel: u64(usage["usageInKernelmode"]),
        user: u64(usage["usageInUsermode"]),
        ...omitEmpty({ total: u64(usage["totalUsage"]), percpu: list(usage["percpuUsage"]).map(u64) }),
      },
      throttling: omitEmpty({
        periods: u64(thr["periods"]),
        throttledPeriods: u64(thr["throttledPeriods"]),
        throttledTime: u64(thr["throttledTime"]),
      }),
    },
    memory: {
      ...omitEmpty({ cache: u64(mem["cache"]) }),
      usage: memoryEntry(mem["usage"]),
      swap: memoryEntry(mem["swapUsage"]),
      kernel: memoryEntry(mem["kernelUsage"]),
      ...(Object.keys(raw).length === 0 ? {} : { raw }),
    },
    pids: omitEmpty({ current: u64(pids["current"]), limit: u64(pids["limit"]) }),
    blkio,
    hugetlb,
  };
}

/** One event line as runc prints it: {"type","id","data"}, 64-bit counters as exact JSON numbers. */
export function eventLine(type: string, id: string, data?: unknown): string {
  const text = JSON.stringify({ type, id, ...(data === undefined ? {} : { data }) }, (_k, v: unknown) =>
    typeof v === "bigint" ? `\u0000u64:${v.toString()}` : v,
  );
  // JSON.stringify has no bigint: each was written as a marked string, unquoted here.
  return text.replace(/"\\u0000u64:(\d+)"/g, "$1") + "\n";
}
