import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { nullLogger } from "../../base/log.js";
import { defaultConfig } from "../../config/defaults.js";
import type { LoadedConfig } from "../../config/load.js";
import type { HostProbe } from "../../platform/probe.js";
import { ScriptedRunner } from "../../../test/helpers/fakes.js";
import type { RuntimeContext } from "../runtime-context.js";
import type { SandboxVmConfig } from "../../sandbox/sandbox.js";
import type { KernelFacts } from "./check-network.js";
import { renderChecks, runChecks } from "./check.js";

describe("renderChecks", () => {
  it("is capable under TCG when only KVM is missing, and says so", () => {
    const r = renderChecks([
      { name: "hardware virtualization (KVM)", ok: false, warning: true, detail: "no kvm", fix: "enable it" },
      { name: "QEMU", ok: true, detail: "/usr/bin/qemu-system-x86_64 7.2" },
    ]);

    assert.equal(r.capable, true);
    assert.match(r.text, /\[WARN\] hardware virtualization \(KVM\): no kvm\n {7}fix: enable it/);
    assert.match(r.text, /capable of running kata-ts containers \(in TCG software emulation/);
  });

  it("with strict, fails on a warning too", () => {
    const results = [{ name: "configuration", ok: false, warning: true, detail: "x.toml: unknown key [foo] bar" }];

    assert.equal(renderChecks(results).capable, true);
    const strict = renderChecks(results, { strict: true });
    assert.equal(strict.capable, false);
    assert.match(strict.text, /\[WARN\] configuration: x\.toml: unknown key \[foo\] bar/);
    assert.match(strict.text, /see the FAIL and WARN lines/);
  });

  it("is not capable when a required part fails, and names the fix", () => {
    const r = renderChecks([
      { name: "QEMU", ok: false, detail: "not found", fix: "apt-get install -y qemu-system-x86" },
    ]);

    assert.equal(r.capable, false);
    assert.match(r.text, /\[FAIL\] QEMU: not found\n {7}fix: apt-get install -y qemu-system-x86/);
    assert.match(r.text, /ERROR: System is not capable/);
  });
});

describe("runChecks", () => {
  const facts: KernelFacts = {
    release: "6.1.0-test",
    sysModules: new Set(["sch_ingress", "cls_u32", "act_mirred"]),
    tun: { charDevice: true, major: 10, minor: 200 },
  };
  function context(config: () => Promise<LoadedConfig>): RuntimeContext {
    const probe: HostProbe = {
      kvmUsable: () => true,
      kvmProblem: () => undefined,
      cpuinfo: () => "",
      which: (bin) => `/usr/bin/${bin}`,
      cpuCount: () => 2,
      memTotalMiB: () => 4096,
    };
    return {
      flags: { root: "/nonexistent", logFormat: "text" },
      logger: nullLogger,
      runner: new ScriptedRunner(() => ({ stdout: "QEMU emulator version 7.2.0\n" })),
      probe,
      sandboxDeps: () => {
        throw new Error("check builds no sandbox");
      },
      templateDeps: () => {
        throw new Error("check reads no VM template");
      },
      config,
    };
  }

  it("checks the networking model's needs from the loaded configuration", async () => {
    const tcfilter = await runChecks(
      context(() => Promise.resolve({ config: defaultConfig, source: "built-in defaults", dropIns: [], warnings: [] })),
      "/nonexistent/image",
      () => facts,
    );
    const none = await runChecks(
      context(() =>
        Promise.resolve({
          config: { ...defaultConfig, runtime: { ...defaultConfig.runtime, internetworkingModel: "none" } },
          source: "x.toml",
          dropIns: [],
          warnings: [],
        }),
      ),
      "/nonexistent/image",
      () => facts,
    );

    assert.deepEqual(
      tcfilter.filter((c) => /^(tc|tun device|kernel module)/.test(c.name)).map((c) => [c.name, c.ok]),
      [
        ["tc", true],
        ["tun device", true],
        ["kernel module sch_ingress", true],
        ["kernel module cls_u32", true],
        ["kernel module act_mirred", true],
      ],
    );
    assert.deepEqual(
      none.filter((c) => /^(tc|tun device|kernel module|networking)/.test(c.name)).map((c) => c.name),
      ["networking"],
    );
  });

  it("fails a configuration that does not load, naming its error, and skips the networking checks", async () => {
    const r = await runChecks(
      context(() => Promise.reject(new Error("/etc/kata-ts/configuration.toml: [runtime] internetworking_model: bad"))),
      "/nonexistent/image",
      () => facts,
    );

    assert.deepEqual(
      r.filter((c) => c.name === "configuration").map((c) => [c.ok, c.detail]),
      [[false, "/etc/kata-ts/configuration.toml: [runtime] internetworking_model: bad"]],
    );
    assert.equal(
      r.some((c) => c.name === "tc" || c.name.startsWith("kernel module")),
      false,
    );
  });

  it("resolves the VM as create would: a configuration create refuses fails check, naming the key", async () => {
    const loaded = { config: defaultConfig, source: "/etc/kata-ts/configuration.toml", dropIns: [], warnings: ["w1"] };
    const refused = await runChecks(
      context(() => Promise.resolve(loaded)),
      "/nonexistent/image",
      () => facts,
      () => Promise.reject(new Error("/etc/kata-ts/configuration.toml: [hypervisor.qemu] image: not supported yet")),
    );
    const accepted = await runChecks(
      context(() => Promise.resolve(loaded)),
      "/nonexistent/image",
      () => facts,
      () =>
        Promise.resolve({
          machineType: "microvm",
          vcpus: 1,
          memoryMiB: 2048,
          kernelPath: "/k/vmlinux",
          initrdPath: "/k/initrd",
        } as unknown as SandboxVmConfig),
    );

    assert.deepEqual(
      refused.filter((c) => c.name === "configuration").map((c) => [c.ok, c.warning === true, c.detail]),
      [
        [false, false, "/etc/kata-ts/configuration.toml: [hypervisor.qemu] image: not supported yet"],
        [false, true, "w1"],
      ],
    );
    assert.equal(renderChecks(refused).capable, false);
    assert.match(
      accepted.find((c) => c.name === "configuration" && c.ok)?.detail ?? "",
      /^\/etc\/kata-ts\/configuration\.toml: microvm, 1 vCPU, 2048 MiB, kernel \/k\/vmlinux, initrd \/k\/initrd$/,
    );
  });
});
