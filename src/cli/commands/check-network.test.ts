import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { moduleState, networkChecks, type KernelFacts } from "./check-network.js";
import { renderChecks } from "./check.js";

const ingress = { name: "sch_ingress", config: "CONFIG_NET_SCH_INGRESS" };
const nothing: KernelFacts = { release: "6.1.0-test", sysModules: new Set() };
const tun = { charDevice: true, major: 10, minor: 200 };
const healthy: KernelFacts = {
  release: "6.1.0-test",
  sysModules: new Set(),
  kconfig: "CONFIG_NET_SCH_INGRESS=y\nCONFIG_NET_CLS_U32=y\nCONFIG_NET_ACT_MIRRED=y\n",
  tun,
};
const onPath = (bin: string): string | undefined => `/usr/sbin/${bin}`;

describe("moduleState", () => {
  it("reads each source of the kernel's modules", () => {
    assert.equal(moduleState(ingress, { ...nothing, sysModules: new Set(["sch_ingress"]) }), "loaded");
    assert.equal(moduleState(ingress, { ...nothing, modulesBuiltin: "kernel/net/sched/sch_ingress.ko\n" }), "built-in");
    assert.equal(moduleState(ingress, { ...nothing, kconfig: "CONFIG_NET_SCH_INGRESS=y\n" }), "built-in");
    assert.equal(moduleState(ingress, { ...nothing, kconfig: "CONFIG_NET_SCH_INGRESS=m\n" }), "loadable");
    assert.equal(
      moduleState(ingress, { ...nothing, modulesDep: "kernel/net/sched/sch_ingress.ko.xz:\nkernel/x.ko: \n" }),
      "loadable",
    );
  });

  it("is missing when a source exists and lists it nowhere, unknown when there is no source at all", () => {
    const lists: KernelFacts = {
      ...nothing,
      modulesBuiltin: "kernel/net/sched/sch_ingress_extra.ko\n",
      modulesDep: "kernel/net/sched/xsch_ingress.ko:\n",
      kconfig: "# CONFIG_NET_SCH_INGRESS is not set\n",
    };

    assert.equal(moduleState(ingress, lists), "missing");
    assert.equal(moduleState(ingress, nothing), "unknown");
  });
});

describe("networkChecks", () => {
  it("passes tc, the tun device and the three modules on a healthy tcfilter host", () => {
    const r = networkChecks("tcfilter", healthy, onPath);

    assert.deepEqual(
      r.map((c) => [c.name, c.ok]),
      [
        ["tc", true],
        ["tun device", true],
        ["kernel module sch_ingress", true],
        ["kernel module cls_u32", true],
        ["kernel module act_mirred", true],
      ],
    );
    assert.equal(renderChecks(r).capable, true);
  });

  it("fails each missing part with what to do", () => {
    const noTun: KernelFacts = {
      release: "6.1.0-test",
      sysModules: new Set(),
      kconfig: "CONFIG_NET_SCH_INGRESS=y\nCONFIG_NET_CLS_U32=m\n",
    };

    const r = networkChecks("tcfilter", noTun, () => undefined);
    const text = renderChecks(r).text;

    assert.equal(renderChecks(r).capable, false);
    assert.match(text, /\[FAIL\] tc: tc not found.*\n {7}fix: apt-get install -y iproute2/);
    assert.match(text, /\[FAIL\] tun device: \/dev\/net\/tun does not exist.*\n {7}fix: modprobe tun/);
    assert.match(text, /\[ok {2}\] kernel module cls_u32: loadable/);
    assert.match(
      text,
      /\[FAIL\] kernel module act_mirred: not built into kernel 6\.1\.0-test.*\n {7}fix: modprobe act_mirred/,
    );
  });

  it("refuses a tun device that is not the character device 10:200", () => {
    const r = networkChecks("tcfilter", { ...healthy, tun: { charDevice: false, major: 0, minor: 0 } }, onPath);

    assert.deepEqual(
      r.filter((c) => c.name === "tun device").map((c) => [c.ok, c.fix]),
      [[false, "rm /dev/net/tun && mknod /dev/net/tun c 10 200"]],
    );
  });

  it("warns, without failing, when the modules cannot be read at all", () => {
    const r = networkChecks("tcfilter", { ...nothing, tun }, onPath);

    assert.deepEqual(
      r.filter((c) => c.name.startsWith("kernel module")).map((c) => [c.ok, c.warning]),
      [
        [false, true],
        [false, true],
        [false, true],
      ],
    );
    assert.equal(renderChecks(r).capable, true);
  });

  it("needs nothing for model none, and fails macvtap as unsupported", () => {
    const none = networkChecks("none", nothing, () => undefined);
    const macvtap = networkChecks("macvtap", healthy, onPath);

    assert.deepEqual(
      none.map((c) => c.ok),
      [true],
    );
    assert.match(none[0]?.detail ?? "", /no network device/);
    assert.deepEqual(
      macvtap.map((c) => [c.ok, c.fix]),
      [[false, 'set internetworking_model = "tcfilter" (or "none") in configuration.toml']],
    );
  });
});
