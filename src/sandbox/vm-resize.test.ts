import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { planResize, shareOf, updatedResources, type ResizeInput } from "./vm-resize.js";

const mib = 1024 * 1024;

function input(over: Partial<ResizeInput> = {}): ResizeInput {
  return {
    machineType: "q35",
    base: { vcpus: 1, memoryMiB: 256 },
    current: { vcpus: 1, memoryMiB: 256 },
    room: { maxVcpus: 4, maxMemoryMiB: 2048, memorySlots: 4 },
    dimmsUsed: 0,
    alignMiB: 128,
    shares: [],
    ...over,
  };
}

describe("shareOf", () => {
  it("reads quota/period (rounded up to a thousandth) and the memory limit", () => {
    assert.deepEqual(shareOf({ cpu: { quota: 150_001, period: 100_000 }, memory: { limit: 512 * mib } }), {
      milliCpus: 1501n,
      memoryBytes: 536870912n,
    });
  });
  it("takes the kernel's default period for a quota alone, and ignores unlimited values", () => {
    assert.equal(shareOf({ cpu: { quota: 50_000 } }).milliCpus, 500n);
    assert.deepEqual(shareOf({ cpu: { quota: -1 }, memory: { limit: -1 } }), { milliCpus: 0n, memoryBytes: 0n });
    assert.deepEqual(shareOf(undefined), { milliCpus: 0n, memoryBytes: 0n });
  });
});

describe("updatedResources", () => {
  it("keeps what the update does not name", () => {
    const r = updatedResources({ cpu: { quota: 1, period: 2 }, memory: { limit: 3 } }, { memory: { limit: 9 } });
    assert.deepEqual(r, { cpu: { quota: 1, period: 2 }, memory: { limit: 9 } });
  });
});

describe("planResize", () => {
  it("adds what the containers need beyond what the VM has, memory in whole blocks", () => {
    const p = planResize(
      input({ shares: [shareOf({ cpu: { quota: 200_000, period: 100_000 }, memory: { limit: 500 * mib } })] }),
    );
    assert.deepEqual(p.need, { vcpus: 3, memoryMiB: 756 });
    assert.equal(p.addVcpus, 2);
    assert.equal(p.addMemoryMiB, 512);
    assert.deepEqual(p.warnings, []);
  });

  it("sums fractions of CPUs before rounding, as Kata does", () => {
    const half = shareOf({ cpu: { quota: 50_000, period: 100_000 } });
    assert.equal(planResize(input({ shares: [half, half, half] })).addVcpus, 2);
  });

  it("adds nothing when the VM is big enough already (a CRI pod sized at boot from its annotations)", () => {
    const p = planResize(
      input({
        current: { vcpus: 3, memoryMiB: 1024 },
        shares: [shareOf({ cpu: { quota: 200_000 }, memory: { limit: 512 * mib } })],
      }),
    );
    assert.equal(p.addVcpus, 0);
    assert.equal(p.addMemoryMiB, 0);
    assert.deepEqual(p.warnings, []);
  });

  it("caps at the room QEMU started with, warning of each cap", () => {
    const p = planResize(input({ shares: [shareOf({ cpu: { quota: 900_000 }, memory: { limit: 4096 * mib } })] }));
    assert.equal(p.addVcpus, 3);
    assert.equal(p.addMemoryMiB, 1792);
    assert.deepEqual(
      p.warnings.map((w) => w.kind),
      ["cpu-cap", "memory-cap"],
    );
    assert.match(p.warnings[0]?.msg ?? "", /needs 10 vCPUs but is capped at 4 \(default_maxvcpus\)/);
  });

  it("adds no memory without a free slot or room for one block", () => {
    const share = [shareOf({ memory: { limit: 100 * mib } })];
    assert.equal(planResize(input({ shares: share, dimmsUsed: 4 })).addMemoryMiB, 0);
    assert.match(
      planResize(input({ shares: share, dimmsUsed: 4 })).warnings[0]?.msg ?? "",
      /memory_slots 4 with 4 used/,
    );
    const noRoom = input({ shares: share, room: { maxVcpus: 4, maxMemoryMiB: 300, memorySlots: 4 } });
    assert.equal(planResize(noRoom).addMemoryMiB, 0);
    assert.equal(planResize(input({ shares: share, room: undefined })).addMemoryMiB, 0);
  });

  it("never hot-adds on microvm: one warning that says the limits apply inside the VM", () => {
    const p = planResize(
      input({ machineType: "microvm", room: undefined, shares: [shareOf({ cpu: { quota: 200_000 } })] }),
    );
    assert.equal(p.addVcpus, 0);
    assert.equal(p.addMemoryMiB, 0);
    assert.equal(p.warnings.length, 1);
    assert.match(p.warnings[0]?.msg ?? "", /microvm has no CPU or memory hotplug.*apply inside the VM/);
    assert.deepEqual(planResize(input({ machineType: "microvm", room: undefined })).warnings, []);
  });

  it("keeps hostile limits in safe integers", () => {
    const p = planResize(input({ shares: [shareOf({ cpu: { quota: Number.MAX_SAFE_INTEGER, period: 1 } })] }));
    assert.ok(Number.isSafeInteger(p.need.vcpus));
    assert.equal(p.addVcpus, 3);
  });
});
