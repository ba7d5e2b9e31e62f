// Component tests of the VM factory seam: Sandbox with a factory that hands out the fake VM (the real
// guest Agent behind it). What a clone owes before use (reseed, clock) and what a failure leaves.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, KataError } from "../base/errors.js";
import type { VmConfig } from "../hypervisor/hypervisor.js";
import { kataErrorChain } from "../../test/helpers/fakes.js";
import { Harness } from "../../test/helpers/harness.js";
import { Sandbox, type SandboxConfig } from "../sandbox/sandbox.js";
import { vmDirOf } from "../sandbox/persist.js";
import { vmSpecOf } from "../sandbox/sandbox-vm.js";
import type { CacheVmSource } from "./cache-client.js";
import { TemplateVmFactory, type FactorySettings, type FactoryVm, type VmFactory } from "./vm-factory.js";
import { templateNic } from "./template-plan.js";

let h: Harness;
const signal = new AbortController().signal;
const settings: FactorySettings = { enableTemplate: true, templatePath: "/run/t", vmCacheNumber: 0 };

/** A factory whose "clone" is a VM of the fake hypervisor, or nothing (a direct boot). */
class FakeFactory implements VmFactory {
  readonly asked: VmConfig[] = [];
  readonly hands: boolean;
  constructor(hands: boolean) {
    this.hands = hands;
  }

  async getVm(_s: FactorySettings, config: VmConfig, sig: AbortSignal): Promise<FactoryVm | undefined> {
    this.asked.push(config);
    return this.hands ? { vm: await h.hypervisor.startVm(config, sig), source: "template" } : undefined;
  }
}

function config(id: string): SandboxConfig {
  const c = h.sandboxConfig(id);
  return { ...c, vm: { ...c.vm, factory: settings } };
}

describe("VM factory seam (fake VM, real agent)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it("a VM from the factory gets fresh randomness and the host's clock before the sandbox is made", async () => {
    const factory = new FakeFactory(true);
    const before = BigInt(Math.floor(Date.now() / 1000));

    const sandbox = await Sandbox.create({ ...h.sandboxDeps(), factory }, config("sb1"), signal);

    const vm = h.hypervisor.vm;
    assert.equal(factory.asked.length, 1);
    assert.equal(h.hypervisor.configs.length, 1, "one VM: the factory's");
    assert.deepEqual(
      vm.reseeds.map((s) => s.length),
      [512],
    );
    assert.equal(vm.clockSets.length, 1);
    assert.ok((vm.clockSets[0] ?? 0n) >= before);
    assert.ok(sandbox.timings["cloneRefreshed"] !== undefined);
    assert.equal(vm.hostname, "sb1");
    await sandbox.destroy();
    assert.deepEqual(await h.leaks(), []);
  });

  it("a clone's guest NIC, which has the template's MAC, is given the pod's MAC and address", async () => {
    const podMac = "02:42:0a:58:00:05";
    // A clone of a template with a NIC: the guest's eth0 has the template's MAC, whatever the pod's is.
    const factory: VmFactory = {
      getVm: async (_s, c, sig) => ({
        vm: await h.hypervisor.startVm({ ...c, nics: [templateNic] }, sig),
        source: "template",
        nicMacChanges: [{ mac: podMac, currentMac: templateNic.mac }],
      }),
    };
    const c = config("sb1");
    const network = {
      links: [{ veth: "eth0", tap: templateNic.tapName }],
      nics: [{ tapName: templateNic.tapName, mac: podMac }],
      interfaces: [
        {
          device: "eth0",
          name: "eth0",
          hwAddr: podMac,
          mtu: 1500n,
          IPAddresses: [{ address: "10.88.0.5", mask: "16" }],
        },
      ],
      routes: [],
      neighbors: [],
      warnings: [],
    };

    const sandbox = await Sandbox.create({ ...h.sandboxDeps(), factory }, { ...c, network }, signal);

    const eth0 = h.hypervisor.vm.net.links.get("eth0");
    assert.ok(eth0, "the guest still has eth0");
    assert.equal(eth0.mac, podMac);
    assert.deepEqual(eth0.addrs, [{ v6: false, cidr: "10.88.0.5/16" }]);
    await sandbox.destroy();
    assert.deepEqual(await h.leaks(), []);
  });

  it("a clone's reseed and clock go alongside CreateSandbox, and are done before create returns", async () => {
    // Each call held 400 ms in the guest: one after the other they would take 1.2 s.
    for (const m of ["reseedRandomDev", "setGuestDateTime", "createSandbox"] as const) {
      h.hypervisor.rpcFault(m, { kind: "delay", ms: 400 }, { times: 1 });
    }
    const t0 = performance.now();

    const sandbox = await Sandbox.create({ ...h.sandboxDeps(), factory: new FakeFactory(true) }, config("sb1"), signal);

    const took = performance.now() - t0;
    assert.ok(took < 1100, `the three calls overlapped (create took ${Math.round(took)} ms)`);
    assert.equal(h.hypervisor.vm.reseeds.length, 1);
    assert.equal(h.hypervisor.vm.clockSets.length, 1);
    await sandbox.destroy();
    assert.deepEqual(await h.leaks(), []);
  });

  it("a reseed that fails while CreateSandbox is still in the guest fails the create and leaves nothing", async () => {
    h.hypervisor.rpcFault("createSandbox", { kind: "delay", ms: 300 }, { times: 1 });
    h.hypervisor.rpcFault("reseedRandomDev", {
      kind: "error",
      error: new KataError(Code.Internal, "reseed: RNDRESEEDCRNG: Operation not permitted"),
    });

    await assert.rejects(
      Sandbox.create({ ...h.sandboxDeps(), factory: new FakeFactory(true) }, config("sb1"), signal),
      kataErrorChain(Code.Internal, "create sandbox sb1", "RNDRESEEDCRNG"),
    );
    assert.deepEqual(await h.leaks(), []);
  });

  it("nothing from the factory: a direct boot, with no reseed or clock call", async () => {
    const factory = new FakeFactory(false);

    const sandbox = await Sandbox.create({ ...h.sandboxDeps(), factory }, config("sb1"), signal);

    assert.equal(factory.asked.length, 1);
    assert.deepEqual(h.hypervisor.vm.reseeds, []);
    assert.deepEqual(h.hypervisor.vm.clockSets, []);
    await sandbox.destroy();
    assert.deepEqual(await h.leaks(), []);
  });

  it("without [factory] in the VM's configuration the factory is not asked", async () => {
    const factory = new FakeFactory(true);

    const sandbox = await Sandbox.create({ ...h.sandboxDeps(), factory }, h.sandboxConfig("sb1"), signal);

    assert.deepEqual(factory.asked, []);
    await sandbox.destroy();
  });

  it("a clone whose guest cannot be reseeded fails the create and leaves nothing", async () => {
    h.hypervisor.rpcFault("reseedRandomDev", {
      kind: "error",
      error: new KataError(Code.Unimplemented, "reseed: no helper in this guest image"),
    });

    await assert.rejects(
      Sandbox.create({ ...h.sandboxDeps(), factory: new FakeFactory(true) }, config("sb1"), signal),
      kataErrorChain(Code.Unimplemented, "create sandbox sb1", "reseed: no helper"),
    );
    assert.deepEqual(await h.leaks(), []);
  });

  it("with the VM cache: the pod's links go to the cache, its MAC changes come back, and no reseed is owed", async () => {
    const asked: unknown[] = [];
    const cache = {
      getVm: async (endpoint: string, c: VmConfig, sig: AbortSignal, links: unknown) => {
        asked.push({ endpoint, links });
        return {
          vm: await h.hypervisor.startVm(c, sig),
          nicMacChanges: [{ mac: "02:42:0a:58:00:05", currentMac: templateNic.mac }],
        };
      },
    } as unknown as CacheVmSource;
    const factory = new TemplateVmFactory(
      {
        hypervisor: h.hypervisor,
        accel: () => "tcg",
        mounter: h.mounter,
        readMountInfo: () => Promise.resolve(""),
        logger: h.logger,
      },
      cache,
    );
    const links = [{ veth: "eth0", tap: "tap0_kata", mtu: 1500 }];
    const cached = { ...settings, enableTemplate: false, vmCacheNumber: 1, vmCacheEndpoint: "/run/c.sock" };

    const sc = h.sandboxConfig("sb1");
    const vmConfig = { ...vmSpecOf(sc.vm), id: "sb1", vmDir: vmDirOf(sc.runDir, "sb1") };

    const got = await factory.getVm(cached, vmConfig, signal, links);

    assert.deepEqual(asked, [{ endpoint: "/run/c.sock", links }]);
    assert.equal(got?.source, "cache");
    assert.deepEqual(got.nicMacChanges, [{ mac: "02:42:0a:58:00:05", currentMac: templateNic.mac }]);
    await got.vm.stop();
  });
});
