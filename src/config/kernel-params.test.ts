import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { defaultConfig } from "./defaults.js";
import { kernelParams } from "./kernel-params.js";
import type { AgentConfig, HypervisorConfig, RuntimeConfig } from "./types.js";

function config(hypervisor: Partial<HypervisorConfig> = {}, agent: Partial<AgentConfig> = {}): RuntimeConfig {
  return {
    ...defaultConfig,
    hypervisor: { ...defaultConfig.hypervisor, ...hypervisor },
    agent: { ...defaultConfig.agent, ...agent },
  };
}

const systemd = [
  "systemd.unit=kata-containers.target",
  "systemd.mask=systemd-networkd.service",
  "systemd.mask=systemd-networkd.socket",
];

describe("kernelParams", () => {
  it("adds nothing for the defaults (the QEMU driver brings the machine-type parameters)", () => {
    assert.deepEqual(kernelParams(defaultConfig), []);
  });

  it("adds systemd's target and masks when booting an image", () => {
    assert.deepEqual(kernelParams(config({ initrd: "", image: "/i.img" })), [...systemd, "systemd.show_status=false"]);
  });

  it("adds no systemd parameter when booting an initrd (the agent is init)", () => {
    assert.ok(!kernelParams(config({ initrd: "/i.img", image: "" })).some((p) => p.startsWith("systemd.")));
  });

  it("adds debug, and systemd's debug output with an image, when the hypervisor enables debug", () => {
    assert.deepEqual(kernelParams(config({ enableDebug: true })), ["debug"]);
    assert.deepEqual(kernelParams(config({ enableDebug: true, initrd: "", image: "/i.img" })), [
      "debug",
      ...systemd,
      "systemd.show_status=true",
      "systemd.log_level=debug",
    ]);
  });

  it("adds debug when the caller asks for it", () => {
    assert.deepEqual(kernelParams(defaultConfig, { debug: true }), ["debug"]);
  });

  it("stops the SCSI scan for virtio-scsi only", () => {
    assert.deepEqual(kernelParams(config({ blockDeviceDriver: "virtio-scsi" })), ["scsi_mod.scan=none"]);
    assert.deepEqual(kernelParams(config({ blockDeviceDriver: "virtio-blk" })), []);
  });

  it("passes agent debug, tracing and debug console settings", () => {
    assert.deepEqual(kernelParams(config({}, { enableDebug: true })), ["agent.log=debug"]);
    assert.deepEqual(kernelParams(config({}, { enableTracing: true })), ["agent.trace=true"]);
    assert.deepEqual(kernelParams(config({}, { debugConsoleEnabled: true })), [
      "agent.debug_console",
      "agent.debug_console_vport=1026",
    ]);
  });

  it("puts the user's kernel_params last so that they win", () => {
    const cfg = config(
      {
        initrd: "",
        image: "/i.img",
        blockDeviceDriver: "virtio-scsi",
        kernelParams: ["systemd.unit=rescue.target", "agent.log=info"],
      },
      { enableDebug: true },
    );

    const params = kernelParams(cfg);

    assert.deepEqual(params.slice(-2), ["systemd.unit=rescue.target", "agent.log=info"]);
    assert.deepEqual(params, [
      ...systemd,
      "systemd.show_status=false",
      "scsi_mod.scan=none",
      "agent.log=debug",
      "systemd.unit=rescue.target",
      "agent.log=info",
    ]);
  });
});
