// Component tests of AgentClient against the harness's fake VM (the real guest Agent, a fake crun):
// they also pin down what the harness's fault injection and crun interpreter do.

import assert from "node:assert/strict";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, KataError } from "../base/errors.js";
import { defaultSpec } from "../oci/default-spec.js";
import { HealthCheckResponse_ServingStatus } from "../protocol/gen/health_pb.js";
import { guestRootfsPath } from "../protocol/guest-paths.js";
import { ociToGrpcSpec } from "../protocol/oci-spec/convert.js";
import type { FakeVm } from "../../test/helpers/fake-vm.js";
import { kataError, kataErrorChain } from "../../test/helpers/fakes.js";
import { Harness } from "../../test/helpers/harness.js";
import { AgentClient, type AgentApi } from "./agent-client.js";

let h: Harness;
let vm: FakeVm;
let client: AgentClient;
let agent: AgentApi;

async function boot(): Promise<void> {
  const signal = new AbortController().signal;
  await h.hypervisor.startVm({ ...h.vmConfig(), id: "sb1", vmDir: path.join(h.root, "vm", "sb1") }, signal);
  vm = h.hypervisor.vm;
  client = await AgentClient.connect(vm.agentSocketPath, { signal });
  await client.waitReady(signal);
  agent = client.agent;
  await agent.createSandbox({ sandboxId: "sb1", hostname: "pod", storages: [] });
}

/** Creates and starts container `id` running `args`. */
async function run(id: string, args: string[]): Promise<void> {
  const spec = defaultSpec({ args, terminal: false, rootPath: guestRootfsPath(id) });
  await agent.createContainer({ containerId: id, OCI: ociToGrpcSpec(spec), storages: [] });
  await agent.startContainer({ containerId: id });
}

async function output(id: string, which: "readStdout" | "readStderr"): Promise<string> {
  let text = "";
  for (;;) {
    const r = await agent[which]({ containerId: id, execId: "", len: 4096 });
    if (r.data.length === 0) return text;
    text += Buffer.from(r.data).toString();
  }
}

describe("AgentClient (fake VM, real agent)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
    await boot();
  });
  afterEach(async () => {
    await client.close();
    await h.dispose();
  });

  it("runs a scripted container: stdout, stderr and exit status come back", async () => {
    await run("c1", ["sh", "-c", "echo one two; echo oops >&2; nothere; exit 4"]);

    const [out, err, wait] = await Promise.all([
      output("c1", "readStdout"),
      output("c1", "readStderr"),
      agent.waitProcess({ containerId: "c1", execId: "" }),
    ]);

    assert.equal(out, "one two\n");
    assert.equal(err, "oops\nsh: nothere: not found\n");
    assert.equal(wait.status, 4);
  });

  it("copies stdin to stdout in a `cat` container until stdin closes", async () => {
    await run("c1", ["cat"]);

    await agent.writeStdin({ containerId: "c1", execId: "", data: Buffer.from("ping\n") });
    await agent.closeStdin({ containerId: "c1", execId: "" });

    assert.equal(await output("c1", "readStdout"), "ping\n");
    assert.equal((await agent.waitProcess({ containerId: "c1", execId: "" })).status, 0);
  });

  it("ends a `sleep` container only by a signal", async () => {
    await run("c1", ["sleep", "inf"]);

    await agent.signalProcess({ containerId: "c1", execId: "", signal: 15 });

    assert.equal((await agent.waitProcess({ containerId: "c1", execId: "" })).status, 128 + 15);
    assert.deepEqual(
      vm.crun.calls.map((c) => c.verb),
      ["run", "kill"],
    );
  });

  it("passes an injected crun failure back as the RPC's error", async () => {
    await run("c1", ["sleep", "inf"]);
    vm.crun.inject("pause", { fail: new KataError(Code.Internal, "crun pause c1: exit code 1: frozen cgroup") });

    const pause = agent.pauseContainer({ containerId: "c1" });

    await assert.rejects(pause, kataErrorChain(Code.Internal, "frozen cgroup"));
  });

  it("answers an injected RPC error with its code and message, and only for the calls it targets", async () => {
    h.hypervisor.rpcFault(
      "createContainer",
      { kind: "error", error: new KataError(Code.ResourceExhausted, "injected: no memory") },
      { afterCalls: 1, times: 1 },
    );
    const spec = (id: string) => ociToGrpcSpec(defaultSpec({ args: ["true"], rootPath: guestRootfsPath(id) }));

    await agent.createContainer({ containerId: "c1", OCI: spec("c1") });
    const second = agent.createContainer({ containerId: "c2", OCI: spec("c2") });
    await assert.rejects(second, kataErrorChain(Code.ResourceExhausted, "injected: no memory"));
    await agent.createContainer({ containerId: "c3", OCI: spec("c3") });
  });

  it("holds a call caught by a pause fault until the test releases it", async () => {
    const gate = h.hypervisor.rpcFault("startContainer", { kind: "pause" });
    const spec = ociToGrpcSpec(defaultSpec({ args: ["true"], rootPath: guestRootfsPath("c1") }));
    await agent.createContainer({ containerId: "c1", OCI: spec });

    const start = agent.startContainer({ containerId: "c1" });
    await gate.reached;
    const heldRuns = vm.crun.calls.length;
    gate.release();
    await start;

    assert.equal(heldRuns, 0, "crun was not run while the call was held");
    assert.equal(gate.hits, 1);
    assert.equal((await agent.waitProcess({ containerId: "c1", execId: "" })).status, 0);
  });

  it("never answers a hung call: the caller's own deadline ends it", async () => {
    h.hypervisor.rpcFault("listProcesses", { kind: "hang" });

    const ps = agent.listProcesses({ containerId: "c1", format: "json" }, { timeoutMs: 50 });

    await assert.rejects(ps, kataError(Code.DeadlineExceeded, "timed out after 50 ms"));
  });

  it("applies an after-stage fault to the answer: the guest did it, the host hears an error", async () => {
    h.hypervisor.rpcFault(
      "createContainer",
      { kind: "error", error: new KataError(Code.Unavailable, "injected: answer lost") },
      { stage: "after" },
    );
    const spec = ociToGrpcSpec(defaultSpec({ args: ["true"], rootPath: guestRootfsPath("c1") }));

    await assert.rejects(agent.createContainer({ containerId: "c1", OCI: spec }), kataError(Code.Unavailable));

    await agent.startContainer({ containerId: "c1" });
  });

  it("closes the connection and reports the VM's exit when the VM dies during a call", async () => {
    h.hypervisor.rpcFault("statsContainer", { kind: "exitVm" });

    const stats = agent.statsContainer({ containerId: "c1" });

    await assert.rejects(stats, kataError(Code.Unavailable));
    assert.deepEqual(await vm.exited, { code: null, signal: "SIGKILL" });
  });

  it("answers nothing while the VM is frozen, and the held calls once it is thawed", async () => {
    vm.freeze();

    const held = client.health.check({});
    const probe = client.health.check({}, { timeoutMs: 50 });
    await assert.rejects(probe, kataError(Code.DeadlineExceeded));
    vm.thaw();

    assert.equal((await held).status, HealthCheckResponse_ServingStatus.SERVING);
  });
});
