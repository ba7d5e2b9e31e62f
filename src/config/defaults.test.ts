import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { defaultImageDir } from "../image/guest-image.js";
import { initrdFileName, kernelFileName } from "../image/manifest.js";
import { defaultConfig, defaultConfigSearchPaths } from "./defaults.js";

describe("defaultConfig", () => {
  it("boots the image that `kata-ts image build` writes", () => {
    assert.equal(defaultConfig.hypervisor.kernel, `${defaultImageDir}/${kernelFileName}`);
    assert.equal(defaultConfig.hypervisor.initrd, `${defaultImageDir}/${initrdFileName}`);
    assert.equal(defaultConfig.hypervisor.image, "");
  });

  it("keeps Kata's QEMU defaults where kata-ts does not differ", () => {
    const h = defaultConfig.hypervisor;

    assert.equal(h.path, "/usr/bin/qemu-system-x86_64");
    assert.deepEqual([h.defaultVcpus, h.defaultMaxVcpus, h.defaultMemoryMiB], [1, 0, 2048]);
    assert.deepEqual([h.memorySlots, h.defaultBridges, h.sharedFs], [10, 1, "virtio-9p"]);
    assert.equal(defaultConfig.agent.dialTimeoutMs, 45_000);
    assert.equal(defaultConfig.runtime.internetworkingModel, "tcfilter");
    assert.deepEqual([defaultConfig.factory.enableTemplate, defaultConfig.factory.vmCacheNumber], [false, 0]);
  });

  it("differs from Kata where docs/configuration.md says so", () => {
    const h = defaultConfig.hypervisor;

    assert.equal(h.machineType, "microvm");
    assert.equal(h.blockDeviceDriver, "virtio-blk");
    assert.equal(h.msize9p, 262144);
    assert.deepEqual(h.enableAnnotations, []);
    assert.deepEqual(defaultConfig.runtime.tracingExporter, { kind: "none" });
  });

  it("looks in /etc before /usr/share", () => {
    assert.deepEqual(defaultConfigSearchPaths, [
      "/etc/kata-ts/configuration.toml",
      "/usr/share/defaults/kata-ts/configuration.toml",
    ]);
  });
});
