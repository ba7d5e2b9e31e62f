// Component tests of the task service's events and containerd's rootfs mounts: a Task client over a real
// unix socket, the real Pod and guest Agent behind a fake VM, the FakeMounter, and a fake containerd
// event service on a real socket reached by the real publisher.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { Code } from "../base/errors.js";
import { defaultSpec } from "../oci/default-spec.js";
import {
  TaskCreateSchema,
  TaskDeleteSchema,
  TaskExecStartedSchema,
  TaskExitSchema,
} from "../protocol/gen/containerd/api/events/task_pb.js";
import { Task } from "../protocol/gen/containerd/runtime/v2/task/shim_pb.js";
import { createClient, type TtrpcClient } from "../protocol/ttrpc/client.js";
import { TtrpcServer } from "../protocol/ttrpc/server.js";
import { Pod } from "../sandbox/pod.js";
import { FakeEventsServer } from "../../test/helpers/fake-events.js";
import { kataErrorChain } from "../../test/helpers/fakes.js";
import { Harness } from "../../test/helpers/harness.js";
import { createEventPublisher, type EventPublisher } from "./events.js";
import { anyTypes, forceDeleteKey, jsonAny, registerTaskService } from "./task-service.js";

type MethodsOf<T> = T extends GenService<infer S> ? S : never;

let h: Harness;
let srv: FakeEventsServer;
let task: TtrpcClient<MethodsOf<typeof Task>>;
let pod: Pod;
let publisher: EventPublisher;
/** Topics in the order publish() was called, with "answer:<verb>" marks when a task call returned. */
let timeline: string[];

const overlay = {
  type: "overlay",
  source: "overlay",
  options: ["workdir=/snap/2/work", "upperdir=/snap/2/fs", "lowerdir=/snap/1/fs"],
};

async function serve(opts: { callTimeoutMs?: number } = {}): Promise<void> {
  pod = new Pod(h.podDeps(), h.podOptions("sb1"));
  const real = createEventPublisher({
    ttrpcAddress: srv.socketPath,
    namespace: "k8s.io",
    logger: h.logger,
    retryDelayMs: 20,
    callTimeoutMs: opts.callTimeoutMs ?? 2000,
    drainMs: 500,
  });
  // Records the synchronous publish() calls, so the order against the task calls' answers is visible.
  publisher = {
    publish<D extends DescMessage>(topic: string, schema: D, message: MessageInitShape<D>): void {
      timeline.push(topic);
      real.publish(topic, schema, message);
    },
    close: () => real.close(),
  };
  const server = new TtrpcServer();
  registerTaskService(server, pod, {
    pid: 4242,
    onShutdown: () => undefined,
    publisher,
    mounter: h.mounter,
    logger: h.logger,
  });
  task = createClient(Task, await h.connect(server));
}

async function answered<T>(verb: string, p: Promise<T>): Promise<T> {
  const r = await p;
  timeline.push(`answer:${verb}`);
  return r;
}

describe("task service events and rootfs (fake VM, real agent)", { timeout: 20_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
    srv = await FakeEventsServer.create();
    timeline = [];
  });
  afterEach(async () => {
    await publisher.close();
    await srv.dispose();
    await h.dispose();
  });

  it("mounts containerd's rootfs, publishes create/start/exit/delete in order (exit before delete's answer), unmounts", async () => {
    await srv.start();
    await serve();
    const io = await h.stdio("sb1");
    const bundle = await h.bundle("sb1", { args: ["sh", "-c", "echo hi; exit 7"] });

    await answered(
      "create",
      task.create({ id: "sb1", bundle, rootfs: [overlay], stdout: io.paths.stdout, stderr: io.paths.stderr }),
    );
    const mountedAfterCreate = h.mounter.mounts().filter((m) => m.target === `${bundle}/rootfs`);
    await answered("start", task.start({ id: "sb1" }));
    await task.wait({ id: "sb1" });
    await answered("delete", task.delete({ id: "sb1" }));
    await task.shutdown({});
    await srv.waitFor(4);

    assert.deepEqual(
      mountedAfterCreate.map((m) => [m.fstype, m.source]),
      [["overlay", "overlay"]],
    );
    assert.deepEqual(timeline, [
      "/tasks/create",
      "answer:create",
      "/tasks/start",
      "answer:start",
      "/tasks/exit",
      "/tasks/delete",
      "answer:delete",
    ]);
    assert.deepEqual(srv.topics(), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
    const created = srv.decode(0, TaskCreateSchema);
    assert.deepEqual(
      [created.containerId, created.bundle, created.rootfs[0]?.type, created.io?.stdout, created.pid],
      ["sb1", bundle, "overlay", io.paths.stdout, 4242],
    );
    const exit = srv.decode(2, TaskExitSchema);
    assert.deepEqual(
      [exit.containerId, exit.id, exit.exitStatus, exit.exitedAt !== undefined],
      ["sb1", "sb1", 7, true],
    );
    const del = srv.decode(3, TaskDeleteSchema);
    assert.deepEqual([del.containerId, del.id, del.exitStatus], ["sb1", "sb1", 7]);
    assert.ok(srv.received.every((e) => e.namespace === "k8s.io"));
    assert.deepEqual(await h.leaks(), []);
  });

  it("publishes paused, resumed, exec-added, exec-started and the exec's exit, then the init's exit when it is killed", async () => {
    await srv.start();
    await serve();
    const bundle = await h.bundle("sb1", { args: ["sleep", "30"] });
    const eio = await h.stdio("e1");
    const spec = jsonAny(anyTypes.process, defaultSpec({ args: ["sh", "-c", "exit 3"] }).process);

    await task.create({ id: "sb1", bundle });
    await task.start({ id: "sb1" });
    await task.pause({ id: "sb1" });
    await task.resume({ id: "sb1" });
    await task.exec({ id: "sb1", execId: "e1", spec, stdout: eio.paths.stdout, stderr: eio.paths.stderr });
    await task.start({ id: "sb1", execId: "e1" });
    const waited = await task.wait({ id: "sb1", execId: "e1" });
    await answered("delete e1", task.delete({ id: "sb1", execId: "e1" }));
    await task.kill({ id: "sb1", signal: 9 });
    await task.wait({ id: "sb1" });
    await answered("delete", task.delete({ id: "sb1" }));
    await srv.waitFor(9);

    assert.equal(waited.exitStatus, 3);
    assert.deepEqual(timeline, [
      "/tasks/create",
      "/tasks/start",
      "/tasks/paused",
      "/tasks/resumed",
      "/tasks/exec-added",
      "/tasks/exec-started",
      "/tasks/exit",
      "answer:delete e1",
      "/tasks/exit",
      "/tasks/delete",
      "answer:delete",
    ]);
    const started = srv.decode(5, TaskExecStartedSchema);
    assert.deepEqual([started.containerId, started.execId, started.pid], ["sb1", "e1", 4242]);
    const execExit = srv.decode(6, TaskExitSchema);
    assert.deepEqual([execExit.containerId, execExit.id, execExit.exitStatus], ["sb1", "e1", 3]);
    const initExit = srv.decode(7, TaskExitSchema);
    assert.deepEqual([initExit.id, initExit.exitStatus], ["sb1", 137]);
  });

  it("publishes TaskExit with a non-zero status when the VM dies under a running task", async () => {
    await srv.start();
    await serve();
    const bundle = await h.bundle("sb1", { args: ["sleep", "30"] });
    await task.create({ id: "sb1", bundle, rootfs: [overlay] });
    await task.start({ id: "sb1" });

    h.hypervisor.vm.exit();
    const waited = await task.wait({ id: "sb1" });
    await srv.waitFor(3);

    assert.notEqual(waited.exitStatus, 0);
    assert.deepEqual(srv.topics(), ["/tasks/create", "/tasks/start", "/tasks/exit"]);
    assert.equal(srv.decode(2, TaskExitSchema).exitStatus, waited.exitStatus);
  });

  it("runs the task API unhindered when the event service never answers", async () => {
    await srv.start();
    srv.mode = "hang";
    await serve({ callTimeoutMs: 60_000 });
    const bundle = await h.bundle("sb1", { args: ["true"] });

    const t0 = performance.now();
    await task.create({ id: "sb1", bundle });
    await task.start({ id: "sb1" });
    await task.wait({ id: "sb1" });
    await task.delete({ id: "sb1" });
    const ms = performance.now() - t0;

    assert.ok(ms < 5000, `the task calls took ${Math.round(ms)} ms`);
    assert.deepEqual(timeline, ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
    assert.equal(srv.received.length, 0);
  });

  it("unmounts the rootfs when the create fails after mounting it, and publishes nothing", async () => {
    await srv.start();
    await serve();
    h.hypervisor.startFault({ kind: "exitDuringBoot" });
    const bundle = await h.bundle("sb1", { args: ["true"] });

    const create = task.create({ id: "sb1", bundle, rootfs: [overlay] });

    await assert.rejects(create, kataErrorChain(Code.DeadlineExceeded, "the VM exited before its agent answered"));
    assert.ok(h.mounter.calls.some((c) => c.op === "mount" && c.target === `${bundle}/rootfs`));
    assert.deepEqual(h.mounter.mounted(), []);
    assert.deepEqual(timeline, []);
    assert.deepEqual(await h.leaks(), []);
  });

  it("unmounts a pod container's rootfs too when the sandbox's forced delete takes it with it", async () => {
    await srv.start();
    await serve();
    const cri = (type: string): Record<string, string> => ({
      "io.kubernetes.cri.container-type": type,
      "io.kubernetes.cri.sandbox-id": "sb1",
    });
    const sb = await h.bundle("sb1", { args: ["sleep", "30"], annotations: cri("sandbox") });
    const c1 = await h.bundle("c1", { args: ["sleep", "30"], annotations: cri("container") });

    await task.create({ id: "sb1", bundle: sb, rootfs: [overlay] });
    await task.start({ id: "sb1" });
    await task.create({ id: "c1", bundle: c1, rootfs: [overlay] });
    await task.start({ id: "c1" });
    const during = h.mounter
      .mounts()
      .filter((m) => m.fstype === "overlay")
      .map((m) => m.target);
    await task.delete({ id: "sb1" }, { metadata: { [forceDeleteKey]: "true" } });

    assert.deepEqual(during, [`${sb}/rootfs`, `${c1}/rootfs`]);
    assert.deepEqual(h.mounter.mounted(), []);
    assert.deepEqual(await h.leaks(), []);
  });

  it("refuses a block-device rootfs naming rootfs[0].type, before mounting anything", async () => {
    await serve();
    const bundle = await h.bundle("sb1", { args: ["true"] });

    const create = task.create({ id: "sb1", bundle, rootfs: [{ type: "ext4", source: "/dev/dm-1" }] });

    await assert.rejects(create, kataErrorChain(Code.Unimplemented, 'rootfs[0].type: "ext4" is not supported'));
    assert.deepEqual(h.mounter.calls, []);
    assert.deepEqual(timeline, []);
  });
});
