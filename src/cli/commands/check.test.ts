import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderChecks } from "./check.js";

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

  it("is not capable when a required part fails, and names the fix", () => {
    const r = renderChecks([
      { name: "QEMU", ok: false, detail: "not found", fix: "apt-get install -y qemu-system-x86" },
    ]);

    assert.equal(r.capable, false);
    assert.match(r.text, /\[FAIL\] QEMU: not found\n {7}fix: apt-get install -y qemu-system-x86/);
    assert.match(r.text, /ERROR: System is not capable/);
  });
});
