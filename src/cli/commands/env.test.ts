import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse, stringify } from "smol-toml";
import { nullLogger } from "../../base/log.js";
import { defaultConfig } from "../../config/defaults.js";
import type { HostProbe } from "../../platform/probe.js";
import { ScriptedRunner } from "../../../test/helpers/fakes.js";
import type { RuntimeContext } from "../runtime-context.js";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { envReport, ksmState } from "./env.js";

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

  it("reports the host's KSM as on with what it shares, off, or absent where the kernel has none", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "kata-ts-ksm-"));
    try {
      await writeFile(path.join(dir, "run"), "1\n");
      await writeFile(path.join(dir, "pages_sharing"), "2560\n");
      assert.deepEqual(await ksmState(dir), { Run: "on", SharingMiB: 10 });
      await writeFile(path.join(dir, "run"), "0\n");
      await writeFile(path.join(dir, "pages_sharing"), "0\n");
      assert.deepEqual(await ksmState(dir), { Run: "off", SharingMiB: 0 });
      assert.deepEqual(await ksmState(path.join(dir, "missing")), { Run: "absent", SharingMiB: 0 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
