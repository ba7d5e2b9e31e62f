import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isKataError } from "../../base/errors.js";
import { fastKernelParams, tscEarlyKhz } from "./kernel-params.js";

describe("tscEarlyKhz", () => {
  const cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: 2096.013\ncache size\t: 36608 KB\n";

  it("converts the first cpu MHz line to kHz exactly", () => {
    // 2096.013 * 1000 is 2096012.9999999998 in floating point; truncating that would be off by one.
    assert.equal(tscEarlyKhz(cpuinfo), 2096013);
    assert.equal(tscEarlyKhz("cpu MHz : 2596.1\ncpu MHz : 1.0\n"), 2596100);
    assert.equal(tscEarlyKhz("cpu MHz\t: 3000\n"), 3000000);
    assert.equal(tscEarlyKhz("cpu MHz\t: 2096.0139\n"), 2096013);
  });

  it("returns undefined without a usable cpu MHz line", () => {
    assert.equal(tscEarlyKhz("processor\t: 0\n"), undefined);
    assert.equal(tscEarlyKhz("cpu MHz\t: 0.000\n"), undefined);
    assert.equal(tscEarlyKhz("cpu MHz\t: unknown\n"), undefined);
  });
});

describe("fastKernelParams", () => {
  it("is the measured fast command line for microvm under TCG", () => {
    // feasibility/fast-cmdline.txt, measured on this machine kind (~2.1 s to READY), with loglevel=1 for 0.
    const measured =
      "console=ttyS0 quiet loglevel=1 tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 " +
      "i8042.dumbkbd=1 i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests mitigations=off " +
      "nokaslr audit=0 apparmor=0 security=none random.trust_cpu=on tsc_early_khz=2096000";

    assert.equal(fastKernelParams("microvm", "tcg", 2096000).join(" "), measured);
  });

  it("adds pci=lastbus=0 only on q35", () => {
    assert.ok(fastKernelParams("q35", "tcg").includes("pci=lastbus=0"));
    assert.ok(!fastKernelParams("microvm", "tcg").includes("pci=lastbus=0"));
  });

  it("adds tsc_early_khz only when given, and rejects a non-integer", () => {
    assert.ok(!fastKernelParams("microvm", "tcg").some((p) => p.startsWith("tsc_early_khz")));
    assert.throws(
      () => fastKernelParams("microvm", "tcg", 2096.5),
      (e) => isKataError(e, "INVALID_ARGUMENT"),
    );
  });

  it("keeps mitigations and KASLR under KVM", () => {
    const kvm = fastKernelParams("microvm", "kvm");

    assert.ok(!kvm.includes("mitigations=off"));
    assert.ok(!kvm.includes("nokaslr"));
    assert.ok(kvm.includes("console=ttyS0"));
  });
});
