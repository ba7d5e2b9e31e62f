import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import { parseLinuxResources } from "../oci/parse-spec.js";
import { parseRamBytes, resourcesFromFlags } from "./update-flags.js";

const invalid =
  (re: RegExp) =>
  (e: unknown): boolean =>
    isKataError(e, Code.InvalidArgument) && re.test(e.message);

describe("update flags to linux.resources", () => {
  it("maps every runc flag to its runtime-spec field", () => {
    const r = resourcesFromFlags({
      memory: "1g",
      memoryReservation: "512m",
      memorySwap: "-1",
      kernelMemory: "64m",
      kernelMemoryTcp: "1048576",
      cpuShare: "512",
      cpuPeriod: "100000",
      cpuQuota: "200000",
      cpuRtPeriod: "1000000",
      cpuRtRuntime: "950000",
      cpusetCpus: "0-1",
      cpusetMems: "0",
      pidsLimit: "64",
      blkioWeight: "500",
    });

    assert.deepEqual(r, {
      memory: { limit: 2 ** 30, reservation: 2 ** 29, swap: -1, kernel: 64 * 2 ** 20, kernelTCP: 1048576 },
      cpu: {
        shares: 512,
        period: 100000,
        quota: 200000,
        realtimePeriod: 1000000,
        realtimeRuntime: 950000,
        cpus: "0-1",
        mems: "0",
      },
      pids: { limit: 64 },
      blockIO: { weight: 500 },
    });
    // The document is one the service accepts.
    assert.doesNotThrow(() => parseLinuxResources(r, "update flags"));
  });

  it("gives only what was asked (--cpu-shares as runc's --cpu-share)", () => {
    assert.deepEqual(resourcesFromFlags({ cpuShares: "1024" }), { cpu: { shares: 1024 } });
    assert.deepEqual(resourcesFromFlags({ cpuQuota: "-1" }), { cpu: { quota: -1 } });
    assert.deepEqual(resourcesFromFlags({}), {});
  });

  it("refuses bad values naming the flag", () => {
    assert.throws(() => resourcesFromFlags({ memory: "lots" }), invalid(/--memory "lots": expected bytes/));
    assert.throws(() => resourcesFromFlags({ pidsLimit: "1.5" }), invalid(/--pids-limit "1.5": expected an integer/));
    assert.throws(
      () => resourcesFromFlags({ cpuQuota: "-2" }),
      invalid(/--cpu-quota "-2": expected an integer of at least -1/),
    );
    assert.throws(() => resourcesFromFlags({ blkioWeight: "5" }), invalid(/--blkio-weight 5: the range is 10 to 1000/));
    assert.throws(() => resourcesFromFlags({ cpuShare: "1", cpuShares: "2" }), invalid(/give one/));
  });

  it("refuses Intel RDT, and other flags next to --resources", () => {
    assert.throws(() => resourcesFromFlags({ l3CacheSchema: "L3:0=f" }), invalid(/--l3-cache-schema: Intel RDT/));
    assert.throws(() => resourcesFromFlags({ memBwSchema: "MB:0=50" }), invalid(/--mem-bw-schema: Intel RDT/));
    assert.throws(
      () => resourcesFromFlags({ resources: "r.json", memory: "1g", pidsLimit: "5" }),
      invalid(/--resources goes alone: --memory, --pids-limit would be ignored/),
    );
    assert.deepEqual(resourcesFromFlags({ resources: "r.json" }), {});
  });

  it("parses memory sizes as docker's RAMInBytes (binary units)", () => {
    assert.equal(parseRamBytes("1073741824", "--memory"), 1073741824);
    assert.equal(parseRamBytes("1.5g", "--memory"), 1.5 * 2 ** 30);
    assert.equal(parseRamBytes("100MB", "--memory"), 100 * 2 ** 20);
    assert.equal(parseRamBytes("2GiB", "--memory"), 2 * 2 ** 30);
    assert.equal(parseRamBytes("-1", "--memory-swap"), -1);
    assert.throws(() => parseRamBytes("-2", "--memory-swap"), invalid(/--memory-swap "-2"/));
    assert.throws(() => parseRamBytes("1x", "--memory"), invalid(/--memory "1x"/));
  });
});
