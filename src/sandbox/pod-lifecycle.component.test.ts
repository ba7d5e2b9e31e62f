// The pod's status table and locks under concurrent verbs, a sandbox that is lost (its VM exits, its
// guest stops answering, its agent exits), forced deletes, and a stdout reader that stops reading, on the component
// harness (the real guest Agent behind a fake VM).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { constants as fsc, openSync, closeSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code } from "../base/errors.js";
import type { Process } from "../oci/spec.js";
import { kataErrorChain } from "../../test/helpers/fakes.js";
import { Harness, criAnnotations } from "../../test/helpers/harness.js";
import { lostExitStatus } from "./pod-process.js";
import { Pod } from "./pod.js";

let h: Harness;
const signal = new AbortController().signal;
const shellProcess = (args: string[]): Process => ({ args, cwd: "/", user: { uid: 0, gid: 0 }, terminal: false });

/** A pod whose sandbox container runs `args` (created, not started); short guest deadlines. */
async function newPod(args: string[], opts: { requestMs?: number } = {}): Promise<Pod> {
  const deps = h.podDeps();
  const vm = {
    ...h.vmConfig(),
    agentDeadlines: { requestMs: opts.requestMs ?? 2000, createContainerMs: 2000, healthCheckMs: 200 },
  };
  const pod = new Pod({ ...deps, resolveVm: () => Promise.resolve(vm) }, h.podOptions("sb1"));
  const bundle = await h.bundle("sb1", { args, annotations: criAnnotations("sandbox", "sb1") });
  await pod.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, signal);
  return pod;
}

async function addContainer(pod: Pod, id: string, args: string[]): Promise<void> {
  const bundle = await h.bundle(id, { args, annotations: criAnnotations("container", "sb1") });
  await pod.create({ id, bundle, stdio: (await h.stdio(id)).paths }, signal);
}

describe("Pod lifecycle under concurrency and loss (fake VM, real agent)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it("serialises start and delete of one container: the start wins, the delete is refused as running", async () => {
    const pod = await newPod(["sleep", "inf"]);

    const [start, del] = await Promise.allSettled([pod.start("sb1", "", signal), pod.delete("sb1", "", signal)]);

    assert.equal(start.status, "fulfilled");
    assert.ok(del.status === "rejected");
    kataErrorChain(Code.FailedPrecondition, "container sb1 is running: cannot delete it")(del.reason);
    assert.equal(pod.state("sb1", "").status, "running");
    await pod.shutdown();
    assert.deepEqual(await h.leaks(), []);
  });

  it("serialises delete and start of a created container: one wins, the other sees what it left", async () => {
    const pod = await newPod(["sleep", "inf"]);
    await addContainer(pod, "c1", ["sleep", "inf"]);

    const [del, start] = await Promise.allSettled([pod.delete("c1", "", signal), pod.start("c1", "", signal)]);

    if (del.status === "fulfilled") {
      assert.ok(start.status === "rejected");
      kataErrorChain(Code.NotFound, "container c1 not found")(start.reason);
      assert.deepEqual(pod.containerIds(), ["sb1"]);
    } else {
      assert.equal(start.status, "fulfilled");
      kataErrorChain(Code.FailedPrecondition, "container c1 is running: cannot delete it")(del.reason);
      assert.equal(pod.state("c1", "").status, "running");
    }
    await pod.shutdown();
    assert.deepEqual(await h.leaks(), []);
  });

  it("kills and force-deletes a running container at once, leaving only the sandbox", async () => {
    const pod = await newPod(["sleep", "inf"]);
    await pod.start("sb1", "", signal);
    await addContainer(pod, "c1", ["sleep", "inf"]);
    await pod.start("c1", "", signal);

    await Promise.all([pod.kill("c1", "", 9, true, signal), pod.delete("c1", "", signal, { force: true })]);

    assert.deepEqual(pod.containerIds(), ["sb1"]);
    assert.deepEqual(h.hypervisor.vm.crun.containerIds(), ["sb1"]);
    await pod.shutdown();
    assert.deepEqual(await h.leaks(), []);
  });

  it("refuses the second of two execs with one id, and runs two execs with different ids", async () => {
    const pod = await newPod(["sleep", "inf"]);
    await pod.start("sb1", "", signal);
    const io = await h.stdio("e");

    const same = await Promise.allSettled([
      pod.exec("sb1", "e1", shellProcess(["sleep", "inf"]), io.paths),
      pod.exec("sb1", "e1", shellProcess(["sleep", "inf"]), io.paths),
    ]);
    await Promise.all([
      pod.exec("sb1", "e2", shellProcess(["exit", "2"]), (await h.stdio("e2")).paths),
      pod.exec("sb1", "e3", shellProcess(["exit", "3"]), (await h.stdio("e3")).paths),
    ]);
    await Promise.all([pod.start("sb1", "e2", signal), pod.start("sb1", "e3", signal)]);

    assert.deepEqual(
      same.map((r) => r.status),
      ["fulfilled", "rejected"],
    );
    const [, second] = same;
    assert.ok(second.status === "rejected");
    kataErrorChain(Code.AlreadyExists, "exec id e1 already exists")(second.reason);
    assert.equal((await pod.wait("sb1", "e2")).exitStatus, 2);
    assert.equal((await pod.wait("sb1", "e3")).exitStatus, 3);
    await pod.shutdown();
    assert.deepEqual(await h.leaks(), []);
  });

  it("lets a delete asked during a create wait for it, then delete what it made", async () => {
    h.hypervisor.rpcFault("createContainer", { kind: "delay", ms: 100 });
    const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
    const bundle = await h.bundle("sb1", { args: ["true"], annotations: criAnnotations("sandbox", "sb1") });

    const create = pod.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, signal);
    await new Promise((r) => setTimeout(r, 10));
    const del = pod.delete("sb1", "", signal);

    await create;
    assert.equal((await del).exit?.exitStatus, 137);
    await pod.done;
    assert.deepEqual(await h.leaks(), []);
  });

  it("cancels a create in progress on shutdown, leaving nothing", async () => {
    h.hypervisor.startFault({ kind: "hang" });
    const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
    const bundle = await h.bundle("sb1", { args: ["true"] });

    const create = pod.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, signal);
    await new Promise((r) => setTimeout(r, 20));
    await pod.shutdown();

    await assert.rejects(create, kataErrorChain(Code.Cancelled));
    assert.deepEqual(await h.leaks(), []);
  });

  it("reports every process gone (exit 255) when the VM exits, and still deletes cleanly", async () => {
    const pod = await newPod(["sleep", "inf"]);
    await pod.start("sb1", "", signal);
    await addContainer(pod, "c1", ["sleep", "inf"]);

    h.hypervisor.vm.exit();

    assert.equal((await pod.wait("sb1", "")).exitStatus, lostExitStatus);
    assert.equal((await pod.wait("c1", "")).exitStatus, lostExitStatus, "a created container is gone too");
    assert.equal(pod.state("c1", "").status, "stopped");
    await pod.kill("sb1", "", 9, true, signal);
    await pod.delete("c1", "", signal);
    await pod.delete("sb1", "", signal);
    assert.deepEqual(await h.leaks(), []);
  });

  it("reports every process gone (exit 255) when the guest agent exits, and refuses guest verbs at once", async () => {
    // Long deadlines: the loss must come from the closed channel, not from a missed deadline.
    const pod = await newPod(["sleep", "inf"], { requestMs: 60_000 });
    await pod.start("sb1", "", signal);
    const exited = pod.wait("sb1", "");

    h.hypervisor.vm.agentExits();

    assert.equal((await exited).exitStatus, lostExitStatus);
    assert.equal(pod.state("sb1", "").status, "stopped");
    await assert.rejects(pod.pause("sb1", signal), kataErrorChain(Code.FailedPrecondition, "is stopped"));
    await assert.rejects(pod.stats("sb1", signal), kataErrorChain(Code.Unavailable, "its guest agent exited"));
    await pod.delete("sb1", "", signal);
    await pod.done;
    assert.deepEqual(await h.leaks(), []);
  });

  it("fails a verb at its deadline when the guest freezes, then counts the guest lost; delete --force cleans up", async () => {
    const pod = await newPod(["sleep", "inf"], { requestMs: 100 });
    await pod.start("sb1", "", signal);
    h.hypervisor.vm.freeze();

    await assert.rejects(pod.pause("sb1", signal), kataErrorChain(Code.DeadlineExceeded));
    const exit = await pod.wait("sb1", "");

    assert.equal(exit.exitStatus, lostExitStatus);
    await pod.delete("sb1", "", signal, { force: true });
    await pod.done;
    assert.deepEqual(await h.leaks(), []);
  });

  it("force-deletes a sandbox with its pod containers still running", async () => {
    const pod = await newPod(["sleep", "inf"]);
    await pod.start("sb1", "", signal);
    await addContainer(pod, "c1", ["sleep", "inf"]);
    await pod.start("c1", "", signal);

    await assert.rejects(pod.delete("sb1", "", signal), kataErrorChain(Code.FailedPrecondition, "is running"));
    await pod.delete("sb1", "", signal, { force: true });

    await pod.done;
    assert.equal(await h.store.sandboxOf("c1"), undefined);
    assert.deepEqual(await h.leaks(), []);
  });

  it("tears down a container whose stdout reader stopped reading, without waiting for the reader", async () => {
    const fifo = path.join(h.dir, "stuck-out");
    execFileSync("mkfifo", [fifo]);
    // A reader that opens the fifo and never reads: writes block once the pipe buffer is full.
    const reader = openSync(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK);
    try {
      const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
      const input = await h.stdio("in", { stdin: "x".repeat(1 << 20) });
      const bundle = await h.bundle("sb1", { args: ["sh", "-c", "cat; sleep inf"] });
      const stdio = { stdin: input.paths.stdin, stdout: fifo, stderr: "", terminal: false };
      await pod.create({ id: "sb1", bundle, stdio }, signal);
      await pod.start("sb1", "", signal);
      await new Promise((r) => setTimeout(r, 200));
      const exited = pod.wait("sb1", "");

      await pod.delete("sb1", "", signal, { force: true });

      assert.equal((await exited).exitStatus, 137);
      await pod.done;
      assert.deepEqual(await h.leaks(), []);
    } finally {
      closeSync(reader);
    }
  });
});
