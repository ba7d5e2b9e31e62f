import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Spec } from "../oci/spec.js";
import {
  memoryMiBOf,
  planVmSizing,
  sandboxSizingKeys as keys,
  vcpusOf,
  workloadOf,
  type SizingLimits,
  type Workload,
} from "./vm-sizing.js";

const gib = 1024 ** 3;

function single(cpu?: { quota?: number; period?: number }, limit?: number): Spec {
  return {
    ociVersion: "1.0.2",
    linux: {
      resources: {
        ...(cpu === undefined ? {} : { cpu }),
        ...(limit === undefined ? {} : { memory: { limit } }),
      },
    },
  };
}

function criSandbox(a: Record<string, string>, scheme: "containerd" | "crio" = "containerd"): Spec {
  const type =
    scheme === "containerd"
      ? { "io.kubernetes.cri.container-type": "sandbox" }
      : { "io.kubernetes.cri-o.ContainerType": "sandbox" };
  // A CRI sandbox's own resources are the pause container's, never the pod's: they must not count.
  return { ...single({ quota: 900_000, period: 100_000 }, 8 * gib), annotations: { ...type, ...a } };
}

const limits: SizingLimits = {
  machineType: "microvm",
  defaultVcpus: 1,
  defaultMaxVcpus: 0,
  defaultMemoryMiB: 2048,
  defaultMaxMemoryMiB: 0,
  memorySlots: 10,
  hostCpus: 8,
  hostMemoryMiB: 16384,
};

function workload(vcpus: number, memoryMiB: number): Workload {
  return { vcpus, memoryMiB, source: "container resources", warnings: [] };
}

describe("vcpusOf", () => {
  const cases: [string, bigint | undefined, bigint | undefined, number][] = [
    ["no quota", undefined, 100_000n, 0],
    ["no period", 200_000n, undefined, 0],
    ["two CPUs", 200_000n, 100_000n, 2],
    ["rounded up (Kata: 2200 mCPU is 3)", 220_000n, 100_000n, 3],
    ["a sliver is a whole vCPU", 1n, 100_000n, 1],
    ["zero quota", 0n, 100_000n, 0],
    ["unlimited (-1)", -1n, 100_000n, 0],
    ["negative", -500_000n, 100_000n, 0],
    ["period 0", 200_000n, 0n, 0],
    ["negative period", 200_000n, -100_000n, 0],
    ["int64 max quota is huge, not NaN", 9_223_372_036_854_775_807n, 100_000n, 1 << 30],
    ["short period", 50_000n, 10_000n, 5],
  ];
  for (const [name, quota, period, want] of cases) {
    it(name, () => {
      assert.equal(vcpusOf(quota, period), want);
    });
  }
});

describe("memoryMiBOf", () => {
  it("converts bytes to MiB, rounding up so the limit fits", () => {
    assert.equal(memoryMiBOf(BigInt(gib)), 1024);
    assert.equal(memoryMiBOf(BigInt(gib) + 1n), 1025);
    assert.equal(memoryMiBOf(1n), 1);
  });
  it("adds nothing for absent, zero or unlimited (-1) limits", () => {
    assert.equal(memoryMiBOf(undefined), 0);
    assert.equal(memoryMiBOf(0n), 0);
    assert.equal(memoryMiBOf(-1n), 0);
  });
  it("keeps a huge limit huge (int64 max: 'unlimited' to some tools)", () => {
    assert.equal(memoryMiBOf(9_223_372_036_854_775_807n), 1 << 30);
  });
});

describe("workloadOf", () => {
  it("reads a single container's quota, period and memory limit", () => {
    assert.deepEqual(workloadOf(single({ quota: 200_000, period: 100_000 }, gib)), {
      vcpus: 2,
      memoryMiB: 1024,
      source: "container resources",
      warnings: [],
    });
  });
  it("takes the kernel's default period (100 ms) for a quota without one", () => {
    assert.equal(workloadOf(single({ quota: 300_000 })).vcpus, 3);
  });
  it("adds nothing for a container without resources", () => {
    assert.deepEqual(workloadOf({ ociVersion: "1.0.2" }), { vcpus: 0, memoryMiB: 0, source: "none", warnings: [] });
    assert.equal(workloadOf(single({ period: 100_000 })).source, "none");
  });
  it("ignores shares: only a quota bounds CPU time", () => {
    const spec = single();
    spec.linux = { resources: { cpu: { shares: 4096 } } };
    assert.equal(workloadOf(spec).vcpus, 0);
  });
  it("reads a containerd CRI sandbox's sizing annotations, not the pause container's resources", () => {
    const w = workloadOf(
      criSandbox({ [keys.cpuQuota]: "250000", [keys.cpuPeriod]: "100000", [keys.memory]: String(512 * 1024 * 1024) }),
    );
    assert.deepEqual(w, { vcpus: 3, memoryMiB: 512, source: "sandbox annotations", warnings: [] });
  });
  it("adds nothing for a CRI sandbox without sizing annotations (CRI-O, kubelet < 1.23)", () => {
    assert.deepEqual(workloadOf(criSandbox({}, "crio")), { vcpus: 0, memoryMiB: 0, source: "none", warnings: [] });
    assert.equal(workloadOf(criSandbox({})).source, "none");
  });
  it("takes quota 0 (a pod without CPU limits) as no CPUs", () => {
    const w = workloadOf(criSandbox({ [keys.cpuQuota]: "0", [keys.cpuPeriod]: "100000", [keys.memory]: "0" }));
    assert.equal(w.vcpus, 0);
    assert.equal(w.memoryMiB, 0);
    assert.equal(w.source, "sandbox annotations");
  });
  it("warns about and ignores values that are not integers (as Kata)", () => {
    const w = workloadOf(criSandbox({ [keys.cpuQuota]: "2e5", [keys.cpuPeriod]: "100000", [keys.memory]: "1Gi" }));
    assert.equal(w.vcpus, 0);
    assert.equal(w.memoryMiB, 0);
    assert.equal(w.warnings.length, 2);
    assert.match(w.warnings[0] ?? "", /io\.kubernetes\.cri\.sandbox-cpu-quota: "2e5" is not an integer/);
    assert.match(w.warnings[1] ?? "", /io\.kubernetes\.cri\.sandbox-memory: "1Gi"/);
  });
  it("does not treat a 25-digit value as a number, nor quote more than 40 characters of one", () => {
    const w = workloadOf(criSandbox({ [keys.memory]: "9".repeat(25), [keys.cpuQuota]: "x".repeat(1000) }));
    assert.equal(w.memoryMiB, 0);
    assert.ok(w.warnings.every((m) => m.length < 200));
  });
});

describe("planVmSizing", () => {
  it("adds the workload to the defaults", () => {
    assert.deepEqual(planVmSizing(limits, workload(2, 1024)), { vcpus: 3, memoryMiB: 3072, warnings: [] });
  });
  it("boots the defaults for no workload", () => {
    assert.deepEqual(planVmSizing(limits, workload(0, 0)), { vcpus: 1, memoryMiB: 2048, warnings: [] });
  });
  it("caps at the host's CPUs and memory when the maxima are 0, and says so", () => {
    const s = planVmSizing(limits, workload(16, 32768));
    assert.equal(s.vcpus, 8);
    assert.equal(s.memoryMiB, 16384);
    assert.equal(s.warnings.length, 2);
    assert.match(s.warnings[0] ?? "", /needs 17 vCPUs .* capped at 8 \(default_maxvcpus 0: the host's CPUs\)/);
    assert.match(
      s.warnings[1] ?? "",
      /needs 34816 MiB .* capped at 16384 MiB \(default_maxmemory 0: the host's memory\)/,
    );
  });
  it("caps at explicit maxima, which may exceed the host's", () => {
    const s = planVmSizing({ ...limits, defaultMaxVcpus: 12, defaultMaxMemoryMiB: 3000 }, workload(20, 4096));
    assert.equal(s.vcpus, 12);
    assert.equal(s.memoryMiB, 3000);
    assert.match(s.warnings[0] ?? "", /capped at 12 \(default_maxvcpus\)/);
  });
  it("never goes below the configured defaults, even above the host's", () => {
    const s = planVmSizing(
      { ...limits, defaultVcpus: 4, hostCpus: 2, defaultMemoryMiB: 4096, hostMemoryMiB: 1024 },
      workload(0, 0),
    );
    assert.deepEqual(s, { vcpus: 4, memoryMiB: 4096, warnings: [] });
  });
  it("does not cap memory when the host's is unknown and no maximum is set", () => {
    const s = planVmSizing({ ...limits, hostMemoryMiB: undefined }, workload(0, 100_000));
    assert.equal(s.memoryMiB, 102_048);
    assert.deepEqual(s.warnings, []);
  });
  it("keeps a huge limit from overflowing anything", () => {
    const s = planVmSizing(limits, workload(1 << 30, 1 << 30));
    assert.ok(Number.isSafeInteger(s.vcpus) && Number.isSafeInteger(s.memoryMiB));
    assert.equal(s.vcpus, 8);
  });
  it("passes on the workload's own warnings", () => {
    const s = planVmSizing(limits, { ...workload(0, 0), warnings: ["bad annotation"] });
    assert.deepEqual(s.warnings, ["bad annotation"]);
  });
  it("gives microvm no hotplug room", () => {
    assert.equal(planVmSizing(limits, workload(1, 0)).hotplug, undefined);
  });
  it("gives q35 room up to the caps", () => {
    const s = planVmSizing({ ...limits, machineType: "q35" }, workload(1, 1024));
    assert.deepEqual(s.hotplug, { maxVcpus: 8, maxMemoryMiB: 16384, memorySlots: 10 });
    assert.equal(s.vcpus, 2);
    assert.equal(s.memoryMiB, 3072);
  });
  it("gives q35 no memory room without slots, and none at all when already at the caps", () => {
    const noSlots = planVmSizing({ ...limits, machineType: "q35", memorySlots: 0 }, workload(0, 0));
    assert.deepEqual(noSlots.hotplug, { maxVcpus: 8, maxMemoryMiB: 2048, memorySlots: 0 });
    const full = planVmSizing({ ...limits, machineType: "q35" }, workload(100, 100_000));
    assert.equal(full.hotplug, undefined);
  });
  it("gives q35 at most QEMU's 256 memory slots", () => {
    const s = planVmSizing({ ...limits, machineType: "q35", memorySlots: 1000 }, workload(0, 0));
    assert.equal(s.hotplug?.memorySlots, 256);
  });
});
