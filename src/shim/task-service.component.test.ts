// Component tests of the containerd task service on the harness: a Task client over a real unix
// socket, the real Pod, and the real guest Agent behind a fake VM.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { Code } from "../base/errors.js";
import { Task } from "../protocol/gen/containerd/runtime/v2/task/shim_pb.js";
import { Status } from "../protocol/gen/containerd/api/types/task/task_pb.js";
import { createClient, type TtrpcClient } from "../protocol/ttrpc/client.js";
import { TtrpcServer } from "../protocol/ttrpc/server.js";
import { Pod } from "../sandbox/pod.js";
import { kataErrorChain } from "../../test/helpers/fakes.js";
import { Harness } from "../../test/helpers/harness.js";
import { registerTaskService } from "./task-service.js";

type MethodsOf<T> = T extends GenService<infer S> ? S : never;

let h: Harness;
let task: TtrpcClient<MethodsOf<typeof Task>>;
let events: string[];

let pod: Pod;

async function serveTask(): Promise<void> {
  pod = new Pod(h.podDeps(), h.podOptions("sb1"));
  const server = new TtrpcServer();
  registerTaskService(server, pod, {
    pid: 4242,
    onShutdown: () => {
      events.push("shutdown");
    },
  });
  task = createClient(Task, await h.connect(server));
}

describe("task service (fake VM, real agent)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
    events = [];
    await serveTask();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it("creates, starts, waits for and deletes a container, then shuts down leaving nothing", async () => {
    const io = await h.stdio("sb1");
    const bundle = await h.bundle("sb1", { args: ["sh", "-c", "echo hi; exit 7"] });

    const created = await task.create({ id: "sb1", bundle, stdout: io.paths.stdout, stderr: io.paths.stderr });
    await task.start({ id: "sb1" });
    const waited = await task.wait({ id: "sb1" });
    const state = await task.state({ id: "sb1" });
    await task.delete({ id: "sb1" });
    await task.shutdown({});

    assert.equal(created.pid, h.servicePid("sb1"));
    assert.equal(waited.exitStatus, 7);
    assert.equal(state.status, Status.STOPPED);
    assert.equal(await io.stdout(), "hi\n");
    assert.deepEqual(events, ["shutdown"]);
    assert.deepEqual(await h.leaks(), []);
  });

  it("answers a create whose VM exits during boot with the error, the pod done and nothing left", async () => {
    h.hypervisor.startFault({ kind: "exitDuringBoot" });
    const bundle = await h.bundle("sb1", { args: ["true"] });

    const create = task.create({ id: "sb1", bundle });

    await assert.rejects(create, kataErrorChain(Code.DeadlineExceeded, "the VM exited before its agent answered"));
    await pod.done; // the service ends with its pod: nothing to serve
    assert.deepEqual(await h.leaks(), []);
  });
});
