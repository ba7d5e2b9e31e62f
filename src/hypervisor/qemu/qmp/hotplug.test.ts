import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cpuDeviceId, freeCpuSlots, parseHotpluggableCpus, parseOspmStatus } from "./hotplug.js";

// QEMU 7.2's answer on q35 with -smp 1,maxcpus=3 (shape as QEMU prints it).
const answer = [
  { props: { "core-id": 0, "thread-id": 0, "socket-id": 2 }, "vcpus-count": 1, type: "max-x86_64-cpu" },
  { props: { "core-id": 0, "thread-id": 0, "socket-id": 1 }, "vcpus-count": 1, type: "max-x86_64-cpu" },
  {
    props: { "core-id": 0, "thread-id": 0, "socket-id": 0 },
    "vcpus-count": 1,
    "qom-path": "/machine/unattached/device[0]",
    type: "max-x86_64-cpu",
  },
];

describe("query-hotpluggable-cpus", () => {
  it("finds the free slots in topology order", () => {
    const free = freeCpuSlots(parseHotpluggableCpus(answer), 5);
    assert.deepEqual(
      free.map((s) => s.props["socket-id"]),
      [1, 2],
    );
    assert.equal(free[0]?.type, "max-x86_64-cpu");
    assert.deepEqual(free.map(cpuDeviceId), ["cpu-0-1-0-0-0", "cpu-0-2-0-0-0"]);
    assert.equal(freeCpuSlots(parseHotpluggableCpus(answer), 1).length, 1);
  });
  it("refuses malformed answers", () => {
    for (const bad of [
      {},
      [{ type: "x" }],
      [{ type: "a b", props: {} }],
      [{ type: "x", props: { "socket-id": -1 } }],
      [{ type: "x", props: { "evil prop": 1 } }],
      [{ type: "x", props: {}, "qom-path": 3 }],
    ]) {
      assert.throws(() => parseHotpluggableCpus(bad), /query-hotpluggable-cpus: unexpected answer/);
    }
  });
});

describe("query-acpi-ospm-status", () => {
  it("reads each device's last _OST", () => {
    const r = parseOspmStatus([{ device: "dimm0", slot: "0", "slot-type": "DIMM", source: 1, status: 0 }]);
    assert.deepEqual(r, [{ device: "dimm0", slotType: "DIMM", source: 1, status: 0 }]);
    assert.throws(() => parseOspmStatus([{ device: 1, "slot-type": "DIMM", source: 1, status: 0 }]), /unexpected/);
  });
});
