// Component tests of Pod on the harness: the real guest Agent behind a fake VM, fake mounts and netns.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, KataError } from "../base/errors.js";
import type { Process } from "../oci/spec.js";
import { kataErrorChain } from "../../test/helpers/fakes.js";
import { Harness, criAnnotations } from "../../test/helpers/harness.js";
import { netnsName } from "../network/netns.js";
import { runDirScope } from "./persist.js";
import { Pod } from "./pod.js";

let h: Harness;
const signal = new AbortController().signal;

const catProcess: Process = { args: ["cat"], cwd: "/", user: { uid: 0, gid: 0 }, terminal: false };

async function podWithSandbox(args: string[]): Promise<Pod> {
  const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
  const bundle = await h.bundle("sb1", { args, annotations: criAnnotations("sandbox", "sb1") });
  await pod.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, signal);
  return pod;
}

describe("Pod (fake VM, real agent)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it("runs a single-container sandbox to its exit, with its output, then deletes it leaving nothing", async () => {
    const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
    const io = await h.stdio("sb1");
    const bundle = await h.bundle("sb1", { args: ["sh", "-c", "echo out; echo err >&2; exit 3"] });

    await pod.create({ id: "sb1", bundle, stdio: io.paths }, signal);
    await pod.start("sb1", "", signal);
    const exit = await pod.wait("sb1", "");

    assert.equal(exit.exitStatus, 3);
    assert.equal(await io.stdout(), "out\n");
    assert.equal(await io.stderr(), "err\n");
    assert.deepEqual(h.netns.names(), [netnsName("sb1", runDirScope(h.root))]);
    assert.equal((await h.store.load("sb1"))?.containers[0]?.status, "stopped");
    await pod.delete("sb1", "", signal);
    await pod.done;
    assert.deepEqual(await h.leaks(), []);
  });

  it("runs a pod container and an exec whose stdin comes back on its stdout, then tears the pod down", async () => {
    const pod = await podWithSandbox(["sleep", "inf"]);
    await pod.start("sb1", "", signal);
    const bundle = await h.bundle("c1", { args: ["sleep", "inf"], annotations: criAnnotations("container", "sb1") });
    await pod.create({ id: "c1", bundle, stdio: (await h.stdio("c1")).paths }, signal);
    await pod.start("c1", "", signal);
    const io = await h.stdio("e1", { stdin: "through the guest\n" });

    await pod.exec("c1", "e1", catProcess, io.paths);
    await pod.start("c1", "e1", signal);
    const exit = await pod.wait("c1", "e1");

    assert.equal(exit.exitStatus, 0);
    assert.equal(await io.stdout(), "through the guest\n");
    assert.deepEqual(h.hypervisor.vm.crun.containerIds(), ["sb1", "c1"]);
    await pod.kill("c1", "", 9, false, signal);
    assert.equal((await pod.wait("c1", "")).exitStatus, 137);
    await pod.delete("c1", "", signal);
    await pod.kill("sb1", "", 15, false, signal);
    await pod.wait("sb1", "");
    await pod.delete("sb1", "", signal);
    assert.deepEqual(await h.leaks(), []);
  });

  it("keeps the sandbox and drops every trace of a pod container the agent refuses", async () => {
    const pod = await podWithSandbox(["sleep", "inf"]);
    h.hypervisor.rpcFault("createContainer", {
      kind: "error",
      error: new KataError(Code.InvalidArgument, "injected: refused"),
    });
    const bundle = await h.bundle("c1", { args: ["true"], annotations: criAnnotations("container", "sb1") });

    const create = pod.create({ id: "c1", bundle, stdio: (await h.stdio("c1")).paths }, signal);

    await assert.rejects(create, kataErrorChain(Code.InvalidArgument, "create container c1", "injected: refused"));
    assert.deepEqual(pod.containerIds(), ["sb1"]);
    assert.equal(await h.store.sandboxOf("c1"), undefined);
    await pod.shutdown();
    assert.deepEqual(await h.leaks(), []);
  });

  it("fails create when the agent never answers, leaving no netns, mapping, state or VM", async () => {
    h.bootTimeoutMs = 100;
    h.hypervisor.startFault({ kind: "frozen" });
    const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
    const bundle = await h.bundle("sb1", { args: ["true"] });

    const create = pod.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, signal);

    await assert.rejects(create, kataErrorChain(Code.DeadlineExceeded, "did not answer within 100 ms"));
    assert.deepEqual(await h.leaks(), []);
  });

  it("refuses to join the host's network namespace before starting any VM", async () => {
    const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
    const bundle = await h.bundle("sb1", {
      args: ["true"],
      edit: (spec) => {
        spec.linux = { ...spec.linux, namespaces: [{ type: "network", path: "/proc/1/ns/net" }] };
      },
    });

    const create = pod.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, signal);

    await assert.rejects(create, kataErrorChain(Code.FailedPrecondition, "host networking"));
    assert.deepEqual(h.hypervisor.configs, []);
    assert.deepEqual(await h.leaks(), []);
  });
});
