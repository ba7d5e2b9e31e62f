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
import { anyTypes, formatKey, registerTaskService } from "./task-service.js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { MetricsSchema } from "../protocol/gen/containerd/cgroups/v1/metrics_pb.js";
import { OptionsSchema } from "../protocol/gen/containerd/pkg/runtimeoptions/v1/api_pb.js";
import { metricsTypeUrl } from "./metrics.js";

type MethodsOf<T> = T extends GenService<infer S> ? S : never;

let h: Harness;
let task: TtrpcClient<MethodsOf<typeof Task>>;
let events: string[];

let pod: Pod;
/** The configPath of each resolveVm call (undefined: the looked-up configuration). */
let resolvedWith: (string | undefined)[];

async function serveTask(): Promise<void> {
  const deps = h.podDeps();
  pod = new Pod(
    {
      ...deps,
      resolveVm: (spec, configPath) => {
        resolvedWith.push(configPath);
        return deps.resolveVm(spec, configPath);
      },
    },
    h.podOptions("sb1"),
  );
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
    resolvedWith = [];
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

  it("answers Stats with containerd's cgroups v1 Metrics, and with the agent's JSON when the CLI asks for kata-ts's format", async () => {
    const bundle = await h.bundle("sb1", { args: ["sleep", "inf"] });
    await task.create({ id: "sb1", bundle });
    await task.start({ id: "sb1" });

    const forContainerd = await task.stats({ id: "sb1" });
    const forCli = await task.stats({ id: "sb1" }, { metadata: { [formatKey]: "kata-ts" } });
    await task.kill({ id: "sb1", signal: 9 });
    await task.wait({ id: "sb1" });
    await task.delete({ id: "sb1" });

    assert.equal(forContainerd.stats?.typeUrl, metricsTypeUrl);
    const metrics = fromBinary(MetricsSchema, forContainerd.stats.value);
    assert.ok(metrics.cpu?.usage !== undefined, "cpu usage present");
    assert.ok(metrics.pids !== undefined, "pids present");
    assert.equal(forCli.stats?.typeUrl, anyTypes.stats);
    const json = JSON.parse(Buffer.from(forCli.stats.value).toString()) as Record<string, unknown>;
    assert.ok("cgroupStats" in json, Object.keys(json).join(","));
    assert.deepEqual(await h.leaks(), []);
  });

  it("makes the sandbox's VM from the runtime options' config path; other option types are ignored", async () => {
    const bundle = await h.bundle("sb1", { args: ["true"] });
    const options = create(AnySchema, {
      typeUrl: "runtimeoptions.v1.Options",
      value: toBinary(OptionsSchema, create(OptionsSchema, { configPath: "/etc/kata-ts/other.toml" })),
    });

    await task.create({ id: "sb1", bundle, options });
    await task.delete({ id: "sb1" });
    await serveTask();
    const runcOptions = create(AnySchema, { typeUrl: "containerd.runc.v1.Options", value: new Uint8Array() });
    await task.create({ id: "sb1", bundle, options: runcOptions });
    await task.delete({ id: "sb1" });

    assert.deepEqual(resolvedWith, ["/etc/kata-ts/other.toml", undefined]);
    assert.deepEqual(await h.leaks(), []);
  });
});
