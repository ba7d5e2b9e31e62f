// Component tests of Sandbox on the harness: the real guest Agent behind a fake VM, fake mounts.

import assert from "node:assert/strict";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, KataError } from "../base/errors.js";
import { loadBundle } from "../oci/bundle.js";
import { guestSharedDir, guestShmDir } from "../protocol/guest-paths.js";
import { kataErrorChain } from "../../test/helpers/fakes.js";
import { Harness } from "../../test/helpers/harness.js";
import { prepareContainer } from "./create-path.js";
import { PodProcess } from "./pod-process.js";
import { Sandbox } from "./sandbox.js";

let h: Harness;
const signal = new AbortController().signal;

async function containerOf(id: string, opts: Parameters<Harness["bundle"]>[1], isSandbox = true) {
  const bundle = await loadBundle(await h.bundle(id, opts));
  return prepareContainer(h.podDeps(), { sandboxId: "sb1", containerId: id, bundle, isSandbox });
}

describe("Sandbox (fake VM, real agent)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it("runs a container whose stdout reaches the host, then destroys everything it made", async () => {
    const sandbox = await Sandbox.create(h.sandboxDeps(), h.sandboxConfig("sb1"), signal);
    await sandbox.createContainer(await containerOf("sb1", { args: ["echo", "hello from the guest"] }), signal);
    const io = await h.stdio("sb1");
    const init = new PodProcess("sb1", "sb1", io.paths, h.logger);
    await init.open();

    await sandbox.agent.startContainer({ containerId: "sb1" }, {});
    init.attach(sandbox.agent, { onExit: () => Promise.resolve() });
    const exit = await init.exited;

    assert.equal(exit.exitStatus, 0);
    assert.equal(await io.stdout(), "hello from the guest\n");
    const share = path.join(h.root, "shared", "sandboxes", "sb1");
    assert.deepEqual(h.mounter.mounted(), [
      `${share}/mounts`,
      `${share}/shared`,
      `${share}/mounts/sb1/rootfs`,
      `${share}/shared/sb1/rootfs`,
    ]);
    assert.deepEqual(h.hypervisor.vm.storage.attached(), [guestSharedDir, guestShmDir]);
    assert.equal(h.hypervisor.vm.hostname, "sb1");
    await sandbox.destroy();
    assert.deepEqual(await h.leaks(), []);
  });

  it("fails with the VM's console when the VM exits during boot, and leaves nothing", async () => {
    h.hypervisor.startFault({ kind: "exitDuringBoot" });

    const create = Sandbox.create(h.sandboxDeps(), h.sandboxConfig("sb1"), signal);

    await assert.rejects(
      create,
      kataErrorChain(Code.DeadlineExceeded, "the VM exited before its agent answered", "kernel panic during boot"),
    );
    assert.deepEqual(await h.leaks(), []);
  });

  it("fails at its boot deadline when the agent never answers, and leaves nothing", async () => {
    h.bootTimeoutMs = 100;
    h.hypervisor.startFault({ kind: "frozen" });
    const started = performance.now();

    const create = Sandbox.create(h.sandboxDeps(), h.sandboxConfig("sb1"), signal);

    await assert.rejects(create, kataErrorChain(Code.DeadlineExceeded, "the guest agent did not answer within 100 ms"));
    assert.ok(performance.now() - started < 1000, "failed at the deadline, not later");
    assert.deepEqual(await h.leaks(), []);
  });

  it("fails without a VM when the hypervisor cannot start one, and leaves nothing", async () => {
    h.hypervisor.startFault({
      kind: "fail",
      error: new KataError(Code.NotFound, "qemu-system-x86_64 is not installed"),
    });

    const create = Sandbox.create(h.sandboxDeps(), h.sandboxConfig("sb1"), signal);

    await assert.rejects(create, kataErrorChain(Code.NotFound, "create sandbox sb1", "is not installed"));
    assert.deepEqual(h.hypervisor.vms, []);
    assert.deepEqual(await h.leaks(), []);
  });

  it("fails when the agent cannot attach a sandbox storage, and leaves nothing", async () => {
    h.hypervisor.onStart = (vm) => {
      vm.storage.failAttach = (s) =>
        s.driver === "ephemeral" ? new KataError(Code.ResourceExhausted, "injected: no room for shm") : undefined;
    };

    const create = Sandbox.create(h.sandboxDeps(), h.sandboxConfig("sb1"), signal);

    await assert.rejects(create, kataErrorChain(Code.ResourceExhausted, "create sandbox sb1", "no room for shm"));
    assert.deepEqual(h.hypervisor.vm.storage.attached(), [], "the share attached before shm was detached again");
    assert.deepEqual(await h.leaks(), []);
  });

  it("unwinds a container's host binds when the agent refuses CreateContainer", async () => {
    const sandbox = await Sandbox.create(h.sandboxDeps(), h.sandboxConfig("sb1"), signal);
    const shareMounts = h.mounter.mounted();
    const volume = await h.volume("data");
    h.hypervisor.rpcFault("createContainer", {
      kind: "error",
      error: new KataError(Code.InvalidArgument, "injected: bad spec"),
    });
    const c = await containerOf("sb1", {
      args: ["true"],
      mounts: [{ destination: "/data", type: "bind", source: volume, options: ["rbind", "rw"] }],
    });

    await assert.rejects(
      sandbox.createContainer(c, signal),
      kataErrorChain(Code.InvalidArgument, "injected: bad spec"),
    );

    const binds = h.mounter.calls.filter((m) => m.op === "bind").map((m) => m.source);
    assert.ok(binds.includes(volume), "the volume was bound before the agent was asked");
    assert.deepEqual(h.mounter.mounted(), shareMounts);
    await sandbox.destroy();
    assert.deepEqual(await h.leaks(), []);
  });

  it("reports a lost exit status when the VM dies under a running container, and still cleans up", async () => {
    const sandbox = await Sandbox.create(h.sandboxDeps(), h.sandboxConfig("sb1"), signal);
    await sandbox.createContainer(await containerOf("sb1", { args: ["sleep", "inf"] }), signal);
    const io = await h.stdio("sb1");
    const init = new PodProcess("sb1", "sb1", io.paths, h.logger);
    await init.open();
    await sandbox.agent.startContainer({ containerId: "sb1" }, {});
    init.attach(sandbox.agent, { onExit: () => Promise.resolve() });

    h.hypervisor.vm.exit();
    const exit = await init.exited;

    assert.equal(exit.exitStatus, 255);
    await sandbox.destroy();
    assert.deepEqual(await h.leaks(), []);
  });
});
