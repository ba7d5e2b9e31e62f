import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import type { MountEntry } from "../platform/mountinfo.js";
import {
  checkTemplatePath,
  cloneNics,
  notOurTmpfs,
  parseTemplateRecord,
  templateMismatches,
  templateMountSource,
  templateNetnsName,
  templateNic,
  withCurrentMacs,
  type TemplateRecord,
  type TemplateRequest,
} from "./template-plan.js";

const file = (p: string) => ({ path: p, sizeBytes: 10, mtimeMs: 1 });
const record: TemplateRecord = {
  version: 1,
  createdAt: "2026-12-02T10:00:00.000Z",
  accel: "tcg",
  binary: "qemu-system-x86_64",
  machineType: "microvm",
  vcpus: 1,
  memoryMiB: 2048,
  hotplug: null,
  kernelParams: ["panic=1"],
  kernel: file("/i/vmlinux"),
  initrd: file("/i/initrd.img"),
  disks: [{ ...file("/i/tools.erofs"), serial: "kata-ts-tools" }],
  taps: [],
  stateBytes: 67713,
  warmup: "none",
};
const request: TemplateRequest = {
  accel: "tcg",
  binary: "qemu-system-x86_64",
  spec: {
    machineType: "microvm",
    vcpus: 1,
    memoryMiB: 2048,
    kernelPath: "/i/vmlinux",
    initrdPath: "/i/initrd.img",
    kernelParams: ["panic=1"],
  },
  kernel: file("/i/vmlinux"),
  initrd: file("/i/initrd.img"),
  disks: [{ ...file("/i/tools.erofs"), serial: "kata-ts-tools" }],
  nics: [],
  ownNetns: true,
};

function mount(mountPoint: string, fstype: string, source: string): MountEntry {
  return { source, mountPoint, fstype, options: [], propagation: [] };
}

describe("template selection", () => {
  it("a request for the template's own VM matches", () => {
    assert.deepEqual(templateMismatches(record, request), []);
  });

  it("names every difference: size, kernel, rebuilt initrd, NICs", () => {
    const got = templateMismatches(record, {
      ...request,
      spec: { ...request.spec, memoryMiB: 1024, vcpus: 2, kernelParams: ["panic=1", "debug"] },
      initrd: { ...request.initrd, mtimeMs: 2 },
      nics: [{ tapName: "tap0_kata", mac: "02:00:00:00:00:01" }],
    });

    assert.deepEqual(
      got.map((m) => m.split(":")[0]),
      ["vcpus", "memory MiB", "kernel parameters", "initrd", "NICs"],
    );
    assert.ok(got.includes("memory MiB: template 2048, sandbox 1024"));
  });

  it("a clone with or without the balloon of reclaim_guest_freed_memory matches only a template alike", () => {
    const withBalloon = { ...request, spec: { ...request.spec, reclaimGuestFreedMemory: true } };

    assert.deepEqual(templateMismatches(record, withBalloon), [
      "free-page-reporting balloon: template false, sandbox true",
    ]);
    assert.deepEqual(templateMismatches({ ...record, balloon: true }, withBalloon), []);
    assert.deepEqual(templateMismatches({ ...record, balloon: true }, request).length, 1);
  });

  it("another QEMU or accelerator does not match", () => {
    const got = templateMismatches(record, { ...request, accel: "kvm", binary: "/opt/qemu" });

    assert.deepEqual(
      got.map((m) => m.split(":")[0]),
      ["accelerator", "hypervisor path"],
    );
  });
});

describe("template NIC", () => {
  const withNic: TemplateRecord = { ...record, taps: [templateNic.tapName], nics: [templateNic] };
  const podNic = { tapName: "tap0_kata", mac: "02:42:0A:58:00:05" };

  it("serves a pod with one interface on the template's tap name, and one with none in a netns of its own", () => {
    assert.deepEqual(templateMismatches(withNic, { ...request, nics: [podNic] }), []);
    assert.deepEqual(templateMismatches(withNic, request), []);
  });

  it("does not serve two interfaces, another tap name, or a sandbox without a netns of its own", () => {
    const twice = templateMismatches(withNic, {
      ...request,
      nics: [podNic, { tapName: "tap1_kata", mac: "02:42:0a:58:00:06" }],
    });
    assert.deepEqual(twice, ["NICs: the template has one, the sandbox 2 (a clone cannot get more)"]);
    assert.deepEqual(templateMismatches(withNic, { ...request, nics: [{ ...podNic, tapName: "tap9_kata" }] }), [
      "NIC tap: template tap0_kata, sandbox tap9_kata",
    ]);
    assert.deepEqual(templateMismatches(withNic, { ...request, ownNetns: false }), [
      "NICs: the template has one, and the sandbox has no network namespace of its own for its tap",
    ]);
  });

  it("a template from before NICs (no nics field) serves only sandboxes without interfaces", () => {
    assert.deepEqual(templateMismatches(record, request), []);
    assert.deepEqual(templateMismatches(record, { ...request, nics: [podNic] }), [
      "NICs: the template has none, the sandbox 1",
    ]);
  });

  it("a clone's QEMU gets the template's tap with the pod's MAC, and its guest the pod's MAC for the NIC with the template's", () => {
    const { nics, macChanges } = cloneNics(withNic, [podNic]);

    assert.deepEqual(nics, [{ tapName: templateNic.tapName, mac: "02:42:0a:58:00:05" }]);
    assert.deepEqual(macChanges, [{ mac: "02:42:0a:58:00:05", currentMac: templateNic.mac }]);
    const ifaces = withCurrentMacs(
      [
        { name: "eth0", hwAddr: "02:42:0A:58:00:05" },
        { name: "x", hwAddr: "02:00:00:00:00:09" },
      ],
      macChanges,
    );
    assert.deepEqual(ifaces, [
      { name: "eth0", hwAddr: "02:42:0A:58:00:05", currentHwAddr: templateNic.mac },
      { name: "x", hwAddr: "02:00:00:00:00:09" },
    ]);
    assert.deepEqual(cloneNics(withNic, []), { nics: [templateNic], macChanges: [] });
  });

  it("the template's netns name is per template path and a valid netns name", () => {
    const a = templateNetnsName("/run/kata-ts/vm/template");
    assert.match(a, /^kata-ts-factory-[0-9a-f]{12}$/);
    assert.notEqual(a, templateNetnsName("/run/n/template"));
  });
});

describe("template record", () => {
  it("round-trips with a NIC, and refuses a NIC with a bad MAC", () => {
    const r = { ...record, taps: [templateNic.tapName], nics: [templateNic] };
    assert.deepEqual(parseTemplateRecord(JSON.stringify(r)), r);
    assert.throws(() => parseTemplateRecord(JSON.stringify({ ...r, nics: [{ tapName: "tap0_kata", mac: "x" }] })), {
      code: Code.FailedPrecondition,
    });
  });

  it("round-trips", () => {
    assert.deepEqual(parseTemplateRecord(JSON.stringify(record)), record);
  });

  for (const [name, text] of [
    ["not JSON", "{"],
    ["null", "null"],
    ["another version", JSON.stringify({ ...record, version: 2 })],
    ["a string for a number", JSON.stringify({ ...record, memoryMiB: "2048" })],
    ["a kernel without size", JSON.stringify({ ...record, kernel: { path: "/k" } })],
    ["too large", JSON.stringify({ ...record, pad: "x".repeat(70_000) })],
  ] as const) {
    it(`refuses ${name}`, () => {
      assert.throws(() => parseTemplateRecord(text), { code: Code.FailedPrecondition });
    });
  }
});

describe("template path", () => {
  const dir = "/run/kata-ts/vm/template";

  it("is ours only as a tmpfs with our source, topmost", () => {
    assert.equal(notOurTmpfs([mount(dir, "tmpfs", templateMountSource)], dir), undefined);
    assert.match(notOurTmpfs([], dir) ?? "", /not a mount point/);
    assert.match(notOurTmpfs([mount(dir, "tmpfs", "other")], dir) ?? "", /not the tmpfs kata-ts factory init makes/);
    assert.match(
      notOurTmpfs([mount(dir, "tmpfs", templateMountSource), mount(dir, "ext4", "/dev/sda1")], dir) ?? "",
      /ext4/,
    );
  });

  it("must need no shell quoting (QEMU's exec: migration URI)", () => {
    assert.equal(checkTemplatePath(dir), dir);
    for (const bad of ["run/t", "/run/t; rm -rf /", "/run/t t", "/run/../t", "/run/t/", "/", "/run/$(x)"]) {
      assert.throws(() => checkTemplatePath(bad), { code: Code.InvalidArgument }, bad);
    }
  });
});
