// Component tests of `factory init`'s NIC (fake VM and host, real guest agent): the template's tap is
// made in a netns of the template's own, the VM is started there with the template NIC, and a failure
// at any later step takes the netns away with the VM and the tmpfs.

import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { netnsPathOf } from "../network/netns.js";
import { kataErrorChain } from "../../test/helpers/fakes.js";
import { Harness } from "../../test/helpers/harness.js";
import { initTemplate, type TemplateDeps, type TemplateSpec } from "./template.js";
import { templateNetnsName, templateNic } from "./template-plan.js";

let h: Harness;
const signal = new AbortController().signal;

async function setup(): Promise<{ deps: TemplateDeps; spec: TemplateSpec; dir: string }> {
  const files = path.join(h.dir, "image");
  await mkdir(files, { recursive: true });
  const kernelPath = path.join(files, "vmlinux");
  const initrdPath = path.join(files, "initrd.img");
  await writeFile(kernelPath, "kernel");
  await writeFile(initrdPath, "initrd");
  const deps: TemplateDeps = {
    hypervisor: h.hypervisor,
    accel: () => "tcg",
    mounter: h.mounter,
    readMountInfo: h.mounter.readMountInfo,
    logger: h.logger,
    netns: h.netns,
  };
  const spec: TemplateSpec = {
    machineType: "microvm",
    vcpus: 1,
    memoryMiB: 256,
    kernelPath,
    initrdPath,
    kernelParams: [],
    binaryPath: "qemu-system-x86_64",
    bootTimeoutMs: 5000,
  };
  return { deps, spec, dir: path.join(h.dir, "template") };
}

describe("factory init: the template's NIC (fake VM and host, real agent)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it("opens the tap in a netns of its own, boots the VM there with the template NIC, and removes it all on a failure after the boot", async () => {
    const { deps, spec, dir } = await setup();
    const ns = templateNetnsName(dir);

    // The fake VM cannot save its state: the failure comes after the VM booted and its agent answered.
    await assert.rejects(
      initTemplate(deps, dir, spec, signal),
      kataErrorChain(Code.Unimplemented, "make the VM template", "cannot save a VM's state"),
    );

    assert.deepEqual(
      h.netns.calls.map((c) => `${c.op} ${c.arg}`),
      [
        `remove ${ns}`,
        `create ${ns}`,
        `run ${netnsPathOf(ns)} ip tuntap add dev tap0_kata mode tap`,
        `run ${netnsPathOf(ns)} ip link set tap0_kata mtu 1500 up`,
        `remove ${ns}`,
      ],
    );
    const [vm] = h.hypervisor.configs;
    assert.equal(vm?.netnsPath, netnsPathOf(ns));
    assert.deepEqual(vm.nics, [templateNic]);
    assert.deepEqual(h.netns.names(), []);
    assert.deepEqual(h.mounter.mounted(), []);
    assert.deepEqual(await h.leaks(), []);
  });

  it("a tap command that fails names itself, and leaves no netns, VM or mount", async () => {
    const { deps, spec, dir } = await setup();
    h.netns.runResult = { code: 1, signal: null, stdout: "", stderr: "ioctl(TUNSETIFF): Device or resource busy" };

    await assert.rejects(
      initTemplate(deps, dir, spec, signal),
      kataErrorChain(Code.Internal, "ip tuntap add dev tap0_kata mode tap in /var/run/netns/kata-ts-factory-", "busy"),
    );

    assert.deepEqual(h.hypervisor.configs, [], "no VM was started");
    assert.deepEqual(h.netns.names(), []);
    assert.deepEqual(h.mounter.mounted(), []);
    assert.deepEqual(await h.leaks(), []);
  });
});
