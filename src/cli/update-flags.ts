// `kata-ts update`'s runc flags (--memory, --cpu-quota, --pids-limit, …) as a runtime-spec
// linux.resources object: the same document `update --resources FILE` reads. Pure, so the mapping is
// tested alone; the service checks the result as it checks a file's.

import { Code, KataError } from "../base/errors.js";

/** The flags as commander gives them: one string per flag given (camelCase of runc's names). */
export interface UpdateFlags {
  readonly resources?: string;
  readonly memory?: string;
  readonly memoryReservation?: string;
  readonly memorySwap?: string;
  readonly kernelMemory?: string;
  readonly kernelMemoryTcp?: string;
  readonly cpuShare?: string;
  readonly cpuShares?: string;
  readonly cpuPeriod?: string;
  readonly cpuQuota?: string;
  readonly cpuRtPeriod?: string;
  readonly cpuRtRuntime?: string;
  readonly cpusetCpus?: string;
  readonly cpusetMems?: string;
  readonly pidsLimit?: string;
  readonly blkioWeight?: string;
  readonly l3CacheSchema?: string;
  readonly memBwSchema?: string;
}

/** runc's flag names, for messages. */
const flagName = (key: string): string => "--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

const binaryUnits: Readonly<Record<string, number>> = {
  "": 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
  p: 2 ** 50,
};

/** docker's units.RAMInBytes, as runc parses memory flags: `1073741824`, `512m`, `1g`, `1.5GiB`; -1 for unlimited. */
export function parseRamBytes(text: string, flag: string): number {
  if (text === "-1") return -1;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$/i.exec(text.trim());
  const unit = binaryUnits[(m?.[2] ?? "").toLowerCase()];
  if (m === null || unit === undefined) {
    throw new KataError(
      Code.InvalidArgument,
      `${flag} ${JSON.stringify(text)}: expected bytes (1073741824, 512m, 1g) or -1`,
    );
  }
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes))
    throw new KataError(Code.InvalidArgument, `${flag} ${JSON.stringify(text)}: too large`);
  return bytes;
}

function parseInteger(text: string, flag: string, min: number): number {
  const n = /^-?\d{1,19}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new KataError(
      Code.InvalidArgument,
      `${flag} ${JSON.stringify(text)}: expected an integer of at least ${min}`,
    );
  }
  return n;
}

/**
 * linux.resources from runc's update flags; only the flags given appear. `--resources` goes alone (runc
 * would silently ignore the other flags next to it: refused here, so none is lost unnoticed).
 */
export function resourcesFromFlags(flags: UpdateFlags): Record<string, unknown> {
  const given = Object.entries(flags).filter(([, v]) => v !== undefined) as [keyof UpdateFlags, string][];
  for (const [k] of given) {
    if (k === "l3CacheSchema" || k === "memBwSchema") {
      throw new KataError(
        Code.InvalidArgument,
        `${flagName(k)}: Intel RDT is not supported (the container runs in a VM)`,
      );
    }
  }
  if (flags.resources !== undefined && given.length > 1) {
    throw new KataError(
      Code.InvalidArgument,
      `--resources goes alone: ${given
        .filter(([k]) => k !== "resources")
        .map(([k]) => flagName(k))
        .join(", ")} would be ignored (put them in the file)`,
    );
  }
  if (flags.cpuShare !== undefined && flags.cpuShares !== undefined) {
    throw new KataError(Code.InvalidArgument, "--cpu-share and --cpu-shares are the same flag: give one");
  }
  const memory: Record<string, number> = {};
  const cpu: Record<string, number | string> = {};
  const ram = (k: keyof UpdateFlags, to: string): void => {
    const v = flags[k];
    if (v !== undefined) memory[to] = parseRamBytes(v, flagName(k));
  };
  ram("memory", "limit");
  ram("memoryReservation", "reservation");
  ram("memorySwap", "swap");
  ram("kernelMemory", "kernel");
  ram("kernelMemoryTcp", "kernelTCP");
  const int = (k: keyof UpdateFlags, to: string, min: number): void => {
    const v = flags[k];
    if (v !== undefined) cpu[to] = parseInteger(v, flagName(k), min);
  };
  int("cpuShare", "shares", 0);
  int("cpuShares", "shares", 0);
  int("cpuPeriod", "period", 0);
  int("cpuQuota", "quota", -1);
  int("cpuRtPeriod", "realtimePeriod", 0);
  int("cpuRtRuntime", "realtimeRuntime", -1);
  if (flags.cpusetCpus !== undefined) cpu["cpus"] = flags.cpusetCpus;
  if (flags.cpusetMems !== undefined) cpu["mems"] = flags.cpusetMems;
  const out: Record<string, unknown> = {};
  if (Object.keys(memory).length > 0) out["memory"] = memory;
  if (Object.keys(cpu).length > 0) out["cpu"] = cpu;
  if (flags.pidsLimit !== undefined) out["pids"] = { limit: parseInteger(flags.pidsLimit, "--pids-limit", -1) };
  if (flags.blkioWeight !== undefined) {
    const w = parseInteger(flags.blkioWeight, "--blkio-weight", 0);
    if (w !== 0 && (w < 10 || w > 1000)) {
      throw new KataError(Code.InvalidArgument, `--blkio-weight ${w}: the range is 10 to 1000`);
    }
    out["blockIO"] = { weight: w };
  }
  return out;
}
