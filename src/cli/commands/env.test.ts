import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse, stringify } from "smol-toml";
import { nullLogger } from "../../base/log.js";
import { defaultConfig } from "../../config/defaults.js";
import type { HostProbe } from "../../platform/probe.js";
import { ScriptedRunner } from "../../../test/helpers/fakes.js";
import type { RuntimeContext } from "../runtime-context.js";
import { envReport } from "./env.js";

function context(runtime: Partial<typeof defaultConfig.runtime>): RuntimeContext {
  const probe: HostProbe = {
    kvmUsable: () => false,
    kvmProblem: () => "/dev/kvm does not exist",
    cpuinfo: () => "vendor_id\t: GenuineIntel\nmodel name\t: Test CPU\n",
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
      throw new Error("env builds no sandbox");
    },
    // No mounts: no VM template anywhere.
    templateDeps: () => ({
      hypervisor: {
        name: "none",
        startVm: () => Promise.reject(new Error("env boots no VM")),
      },
      accel: () => "tcg",
      mounter: {
        mount: () => Promise.reject(new Error("env mounts nothing")),
        bind: () => Promise.reject(new Error("env mounts nothing")),
        remountReadonly: () => Promise.reject(new Error("env mounts nothing")),
        setPropagation: () => Promise.reject(new Error("env mounts nothing")),
        unmount: () => Promise.reject(new Error("env mounts nothing")),
      },
      readMountInfo: () => Promise.resolve(""),
      logger: nullLogger,
    }),
    config: () =>
      Promise.resolve({
        config: { ...defaultConfig, runtime: { ...defaultConfig.runtime, ...runtime } },
        source: "test.toml",
        dropIns: [],
        warnings: [],
      }),
  };
}

describe("envReport", () => {
  it("shows the networking model next to DisableNewNetNs under [Runtime], in its TOML too", async () => {
    const tcfilter = await envReport(context({}));
    const none = await envReport(context({ internetworkingModel: "none", disableNewNetns: true }));

    const runtime = (r: Record<string, unknown>): Record<string, unknown> => r["Runtime"] as Record<string, unknown>;
    assert.deepEqual(
      [runtime(tcfilter)["InternetworkingModel"], runtime(tcfilter)["DisableNewNetNs"]],
      ["tcfilter", false],
    );
    assert.deepEqual([runtime(none)["InternetworkingModel"], runtime(none)["DisableNewNetNs"]], ["none", true]);
    const toml = parse(stringify(none)) as { Runtime: { InternetworkingModel: string } };
    assert.equal(toml.Runtime.InternetworkingModel, "none");
  });
});
