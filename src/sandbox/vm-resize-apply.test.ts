// VmResizer against a fake VM and agent: the order of calls, the size it counts and its errors. The
// real QMP and guest side are checked by the hotplug integration test.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, KataError, describeError, isKataError } from "../base/errors.js";
import { nullLogger } from "../base/log.js";
import { VmResizer } from "./vm-resize-apply.js";
import { shareOf } from "./vm-resize.js";

const mib = 1024 * 1024;
const signal = new AbortController().signal;

function fake(opts: { freeSlots?: number; failMemory?: boolean } = {}) {
  const calls: string[] = [];
  let free = opts.freeSlots ?? 8;
  const resizer = new VmResizer({
    machineType: "q35",
    base: { vcpus: 1, memoryMiB: 256 },
    size: { vcpus: 1, memoryMiB: 256 },
    room: { maxVcpus: 4, maxMemoryMiB: 2048, memorySlots: 2 },
    vm: {
      hotplugVcpu: () => {
        calls.push("cpu");
        return Promise.resolve(free-- > 0);
      },
      hotplugMemory: (sizeMiB) => {
        calls.push(`mem ${sizeMiB}`);
        if (opts.failMemory === true) return Promise.reject(new KataError(Code.Internal, "qmp device_add: boom"));
        return Promise.resolve("dimm0");
      },
      memoryTaken: (id) => {
        calls.push(`taken ${id}`);
        return Promise.resolve();
      },
    },
    agent: {
      onlineCPUMem: (req) => {
        calls.push(`online ${req.nbCpus ?? 0} ${String(req.cpuOnly)}`);
        return Promise.resolve({ $typeName: "google.protobuf.Empty" as const });
      },
    },
    log: nullLogger,
  });
  return { resizer, calls };
}

const twoCpus512 = shareOf({ cpu: { quota: 200_000, period: 100_000 }, memory: { limit: 512 * mib } });

describe("VmResizer (fake VM and agent)", () => {
  it("plugs vCPUs one by one and one DIMM, waits for the guest to take it, then onlines all in one call", async () => {
    const { resizer, calls } = fake();
    await resizer.grow([twoCpus512], signal);
    assert.deepEqual(calls, ["cpu", "cpu", "mem 512", "taken dimm0", "online 3 false"]);
    assert.deepEqual(resizer.size, { vcpus: 3, memoryMiB: 768 });
    calls.length = 0;
    await resizer.grow([twoCpus512], signal);
    assert.deepEqual(calls, [], "nothing more when the VM has what is needed");
  });

  it("fails naming the vCPU when QEMU has no free slot, counting the ones it plugged", async () => {
    const { resizer } = fake({ freeSlots: 1 });
    await assert.rejects(
      resizer.grow([twoCpus512], signal),
      (e) => isKataError(e, Code.ResourceExhausted) && /hot-add vCPU 3 .*no free vCPU slot/.test(e.message),
    );
    assert.equal(resizer.size.vcpus, 2);
  });

  it("fails naming the memory when QEMU refuses the DIMM, and does not count it", async () => {
    const { resizer, calls } = fake({ failMemory: true });
    await assert.rejects(resizer.grow([twoCpus512], signal), (e) =>
      /hot-add 512 MiB of memory to the pod's VM: qmp device_add: boom/.test(describeError(e)),
    );
    assert.deepEqual(resizer.size, { vcpus: 3, memoryMiB: 256 });
    assert.ok(!calls.some((c) => c.startsWith("online")));
  });
});
