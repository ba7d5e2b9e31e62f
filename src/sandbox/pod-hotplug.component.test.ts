// A container joining a pod grows its VM (vm-resize.ts), on the component harness: the real guest
// Agent and host Pod behind a fake VM whose hotplug the test scripts. Nothing here proves QEMU's or the
// guest kernel's side: test/integration/hotplug.test.ts does, in a real VM.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, KataError } from "../base/errors.js";
import type { Spec } from "../oci/spec.js";
import { kataErrorChain } from "../../test/helpers/fakes.js";
import { Harness, criAnnotations } from "../../test/helpers/harness.js";
import type { FakeVm } from "../../test/helpers/fake-vm.js";
import { Pod } from "./pod.js";
import type { SandboxVmConfig } from "./sandbox.js";

let h: Harness;
const signal = new AbortController().signal;
const mib = 1024 * 1024;

function limits(quota: number, memoryMiB: number): (s: Spec) => void {
  return (s) => {
    s.linux = { ...s.linux, resources: { cpu: { quota, period: 100_000 }, memory: { limit: memoryMiB * mib } } };
  };
}

async function pod(vm: Partial<SandboxVmConfig>, script: (v: FakeVm) => void): Promise<Pod> {
  h.hypervisor.onStart = script;
  const deps = { ...h.podDeps(), resolveVm: () => Promise.resolve({ ...h.vmConfig(), ...vm }) };
  const p = new Pod(deps, h.podOptions("sb1"));
  const bundle = await h.bundle("sb1", { args: ["sleep", "inf"], annotations: criAnnotations("sandbox", "sb1") });
  await p.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, signal);
  await p.start("sb1", "", signal);
  return p;
}

async function join(p: Pod, id: string, edit: (s: Spec) => void): Promise<void> {
  const bundle = await h.bundle(id, { args: ["sleep", "inf"], annotations: criAnnotations("container", "sb1"), edit });
  await p.create({ id, bundle, stdio: (await h.stdio(id)).paths }, signal);
}

const small = { vcpus: 1, memoryMiB: 256, baseSize: { vcpus: 1, memoryMiB: 256 } } as const;
const q35 = { ...small, machineType: "q35", hotplug: { maxVcpus: 4, maxMemoryMiB: 2048, memorySlots: 4 } } as const;

describe("a container joining a pod grows its VM (fake VM, real agent)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it("hot-adds before creating the container, and grows again only for what is not there yet", async () => {
    const plugged: string[] = [];
    const p = await pod(q35, (v) => {
      v.hotplugVcpu = () => {
        plugged.push("cpu");
        return Promise.resolve(true);
      };
      v.hotplugMemory = (size) => {
        plugged.push(`mem ${size}`);
        return Promise.resolve("dimm0");
      };
      v.memoryTaken = () => Promise.resolve();
    });
    await join(p, "c1", limits(200_000, 300));
    assert.deepEqual(plugged, ["cpu", "cpu", "mem 384"]);
    assert.deepEqual(h.hypervisor.vm.onlined, [{ nbCpus: 3, cpuOnly: false }]);
    // 1 + 2 + 0.5 vCPUs and 256 + 300 + 50 MiB: one more vCPU, and the 384 MiB DIMM covers the memory.
    await join(p, "c2", limits(50_000, 50));
    assert.deepEqual(plugged, ["cpu", "cpu", "mem 384", "cpu"]);
    assert.deepEqual(h.hypervisor.vm.onlined.at(-1), { nbCpus: 4, cpuOnly: true });
    await p.start("c2", "", signal);
    await p.update("c2", { memory: { limit: 600 * mib } }, signal);
    // update raised the limit: 256 + 300 + 600 = 1156 MiB needed, 640 there: 516 MiB, in 128 MiB blocks.
    assert.equal(plugged.at(-1), "mem 640");
    await p.shutdown();
    assert.deepEqual(await h.leaks(), []);
  });

  it("fails the container's create naming the vCPU when QEMU refuses it; the pod runs on", async () => {
    const p = await pod(q35, (v) => {
      v.hotplugVcpu = () => Promise.reject(new KataError(Code.Internal, "injected: device_add refused"));
    });
    await assert.rejects(
      join(p, "c1", limits(200_000, 0)),
      kataErrorChain(Code.Internal, "create container c1", "hot-add vCPU 2 to the pod's VM", "injected"),
    );
    assert.deepEqual(p.containerIds(), ["sb1"]);
    assert.equal(await h.store.sandboxOf("c1"), undefined);
    assert.deepEqual(h.hypervisor.vm.crun.containerIds(), ["sb1"]);
    await join(p, "c2", () => undefined);
    assert.deepEqual(p.containerIds(), ["sb1", "c2"]);
    await p.shutdown();
    assert.deepEqual(await h.leaks(), []);
  });

  it("on microvm adds nothing and warns once", async () => {
    const p = await pod({ ...small, machineType: "microvm" }, () => undefined);
    await join(p, "c1", limits(200_000, 512));
    await join(p, "c2", limits(200_000, 512));
    const warnings = h.logger.lines.filter((l) => /microvm has no CPU or memory hotplug/.test(l));
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.deepEqual(h.hypervisor.vm.onlined, []);
    await p.shutdown();
    assert.deepEqual(await h.leaks(), []);
  });
});
