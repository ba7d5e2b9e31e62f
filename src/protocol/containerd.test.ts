// The containerd shim v2 protos (proto/containerd/**): the Task and Events service shapes, round trips,
// and hand-computed wire bytes that pin containerd's field numbers (containerd v1.6.39 / v1.7.0).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema, anyUnpack, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { TaskExitSchema } from "./gen/containerd/api/events/task_pb.js";
import {
  EnvelopeSchema,
  Events,
  ForwardRequestSchema,
} from "./gen/containerd/api/services/ttrpc/events/v1/events_pb.js";
import { Status } from "./gen/containerd/api/types/task/task_pb.js";
import { OptionsSchema } from "./gen/containerd/pkg/runtimeoptions/v1/api_pb.js";
import {
  CreateTaskRequestSchema,
  KillRequestSchema,
  StateResponseSchema,
  Task,
} from "./gen/containerd/runtime/v2/task/shim_pb.js";

/** The bytes of an ASCII string, for spelling out expected wire bytes. */
function ascii(s: string): number[] {
  return [...Buffer.from(s, "latin1")];
}

function hex(bytes: Uint8Array | number[]): string {
  return Buffer.from(bytes).toString("hex");
}

describe("containerd Task service", () => {
  it("has containerd's 17 methods, in upstream order, under containerd.task.v2.Task", () => {
    assert.equal(Task.typeName, "containerd.task.v2.Task");
    assert.deepEqual(
      Task.methods.map((m) => m.name),
      [
        "State",
        "Create",
        "Start",
        "Delete",
        "Pids",
        "Pause",
        "Resume",
        "Checkpoint",
        "Kill",
        "Exec",
        "ResizePty",
        "CloseIO",
        "Update",
        "Wait",
        "Stats",
        "Connect",
        "Shutdown",
      ],
    );
    assert.ok(Task.methods.every((m) => m.methodKind === "unary"));
  });

  it("uses containerd's request and response message names", () => {
    const io = Object.fromEntries(Task.methods.map((m) => [m.name, `${m.input.typeName} -> ${m.output.typeName}`]));
    const v2 = "containerd.task.v2";
    const empty = "google.protobuf.Empty";
    assert.deepEqual(io, {
      State: `${v2}.StateRequest -> ${v2}.StateResponse`,
      Create: `${v2}.CreateTaskRequest -> ${v2}.CreateTaskResponse`,
      Start: `${v2}.StartRequest -> ${v2}.StartResponse`,
      Delete: `${v2}.DeleteRequest -> ${v2}.DeleteResponse`,
      Pids: `${v2}.PidsRequest -> ${v2}.PidsResponse`,
      Pause: `${v2}.PauseRequest -> ${empty}`,
      Resume: `${v2}.ResumeRequest -> ${empty}`,
      Checkpoint: `${v2}.CheckpointTaskRequest -> ${empty}`,
      Kill: `${v2}.KillRequest -> ${empty}`,
      Exec: `${v2}.ExecProcessRequest -> ${empty}`,
      ResizePty: `${v2}.ResizePtyRequest -> ${empty}`,
      CloseIO: `${v2}.CloseIORequest -> ${empty}`,
      Update: `${v2}.UpdateTaskRequest -> ${empty}`,
      Wait: `${v2}.WaitRequest -> ${v2}.WaitResponse`,
      Stats: `${v2}.StatsRequest -> ${v2}.StatsResponse`,
      Connect: `${v2}.ConnectRequest -> ${v2}.ConnectResponse`,
      Shutdown: `${v2}.ShutdownRequest -> ${empty}`,
    });
  });

  it("has the events service containerd's shim publisher calls", () => {
    assert.equal(Events.typeName, "containerd.services.events.ttrpc.v1.Events");
    assert.deepEqual(
      Events.methods.map((m) => `${m.name}(${m.input.typeName}) -> ${m.output.typeName}`),
      ["Forward(containerd.services.events.ttrpc.v1.ForwardRequest) -> google.protobuf.Empty"],
    );
  });
});

describe("containerd messages round trip", () => {
  it("CreateTaskRequest with rootfs mounts and an Any option", () => {
    // containerd's typeurl names an unregistered proto message by its bare full name.
    const options = create(AnySchema, {
      typeUrl: "runtimeoptions.v1.Options",
      value: toBinary(OptionsSchema, create(OptionsSchema, { configPath: "/etc/kata/configuration.toml" })),
    });
    const req = create(CreateTaskRequestSchema, {
      id: "c1",
      bundle: "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1",
      rootfs: [
        { type: "overlay", source: "overlay", options: ["index=off", "lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w"] },
        { type: "bind", source: "/host/data", target: "/data", options: ["rbind", "ro"] },
      ],
      terminal: true,
      stdin: "/run/fifo/c1-stdin",
      stdout: "/run/fifo/c1-stdout",
      stderr: "",
      parentCheckpoint: "sha256:abc",
      options,
    });

    const back = fromBinary(CreateTaskRequestSchema, toBinary(CreateTaskRequestSchema, req));

    assert.ok(equals(CreateTaskRequestSchema, back, req));
    assert.equal(back.rootfs.length, 2);
    assert.deepEqual(back.rootfs[1]?.options, ["rbind", "ro"]);
    assert.ok(back.options);
    assert.equal(anyUnpack(back.options, OptionsSchema)?.configPath, "/etc/kata/configuration.toml");
  });

  it("StateResponse with a status and a Timestamp", () => {
    const exitedAt = new Date("2024-05-06T07:08:09.123Z");
    const res = create(StateResponseSchema, {
      id: "c1",
      bundle: "/b",
      pid: 4242,
      status: Status.STOPPED,
      terminal: false,
      exitStatus: 137,
      exitedAt: timestampFromDate(exitedAt),
      execId: "e1",
    });

    const back = fromBinary(StateResponseSchema, toBinary(StateResponseSchema, res));

    assert.ok(equals(StateResponseSchema, back, res));
    assert.equal(back.status, Status.STOPPED);
    assert.ok(back.exitedAt);
    assert.equal(timestampDate(back.exitedAt).toISOString(), exitedAt.toISOString());
  });

  it("an events Envelope carrying a TaskExit in an Any", () => {
    const exit = create(TaskExitSchema, {
      containerId: "c1",
      id: "c1",
      pid: 7,
      exitStatus: 1,
      exitedAt: timestampFromDate(new Date(1_700_000_000_000)),
    });
    const req = create(ForwardRequestSchema, {
      envelope: {
        timestamp: timestampFromDate(new Date(1_700_000_000_500)),
        namespace: "k8s.io",
        topic: "/tasks/exit",
        event: { typeUrl: "containerd.events.TaskExit", value: toBinary(TaskExitSchema, exit) },
      },
    });

    const back = fromBinary(ForwardRequestSchema, toBinary(ForwardRequestSchema, req));

    assert.ok(equals(ForwardRequestSchema, back, req));
    assert.ok(back.envelope?.event);
    assert.equal(back.envelope.topic, "/tasks/exit");
    const unpacked = anyUnpack(back.envelope.event, TaskExitSchema);
    assert.ok(unpacked);
    assert.ok(equals(TaskExitSchema, unpacked, exit));
  });
});

describe("containerd wire bytes", () => {
  it("a small CreateTaskRequest: id=1, bundle=2, stdout=6", () => {
    const req = create(CreateTaskRequestSchema, { id: "c1", bundle: "/b", stdout: "/o" });
    const expected = [
      ...[0x0a, 0x02, ...ascii("c1")], // field 1 (id), wire type 2 (length-delimited), 2 bytes
      ...[0x12, 0x02, ...ascii("/b")], // field 2 (bundle)
      ...[0x32, 0x02, ...ascii("/o")], // field 6 (stdout): 6 << 3 | 2 = 0x32
    ];

    assert.equal(hex(toBinary(CreateTaskRequestSchema, req)), hex(expected));
  });

  it("every CreateTaskRequest field, with a Mount and an Any", () => {
    const req = create(CreateTaskRequestSchema, {
      id: "c1",
      bundle: "/b",
      rootfs: [{ type: "bind", source: "/s", target: "/t", options: ["ro"] }],
      terminal: true,
      stdin: "i",
      stdout: "/o",
      stderr: "e",
      checkpoint: "k",
      parentCheckpoint: "p",
      options: {
        typeUrl: "runtimeoptions.v1.Options",
        value: toBinary(OptionsSchema, create(OptionsSchema, { configPath: "/k.toml" })),
      },
    });
    const expected = [
      ...[0x0a, 0x02, ...ascii("c1")], // 1 id
      ...[0x12, 0x02, ...ascii("/b")], // 2 bundle
      ...[0x1a, 0x12], // 3 rootfs: one Mount of 18 bytes
      ...[0x0a, 0x04, ...ascii("bind")], //   Mount 1 type
      ...[0x12, 0x02, ...ascii("/s")], //   Mount 2 source
      ...[0x1a, 0x02, ...ascii("/t")], //   Mount 3 target
      ...[0x22, 0x02, ...ascii("ro")], //   Mount 4 options
      ...[0x20, 0x01], // 4 terminal: wire type 0 (varint), true
      ...[0x2a, 0x01, ...ascii("i")], // 5 stdin
      ...[0x32, 0x02, ...ascii("/o")], // 6 stdout
      ...[0x3a, 0x01, ...ascii("e")], // 7 stderr
      ...[0x42, 0x01, ...ascii("k")], // 8 checkpoint
      ...[0x4a, 0x01, ...ascii("p")], // 9 parent_checkpoint
      ...[0x52, 0x26], // 10 options: an Any of 38 bytes
      ...[0x0a, 0x19, ...ascii("runtimeoptions.v1.Options")], //   Any 1 type_url (25 bytes)
      ...[0x12, 0x09], //   Any 2 value (9 bytes)
      ...[0x12, 0x07, ...ascii("/k.toml")], //     runtimeoptions.v1.Options 2 config_path
    ];

    assert.equal(hex(toBinary(CreateTaskRequestSchema, req)), hex(expected));
  });

  it("StateResponse: pid=3, status=4, exit_status=9, exited_at=10, exec_id=11", () => {
    const res = create(StateResponseSchema, {
      id: "c1",
      pid: 42,
      status: Status.RUNNING,
      exitStatus: 137,
      exitedAt: { seconds: 1n },
      execId: "e1",
    });
    const expected = [
      ...[0x0a, 0x02, ...ascii("c1")], // 1 id
      ...[0x18, 0x2a], // 3 pid = 42
      ...[0x20, 0x02], // 4 status = RUNNING (2)
      ...[0x48, 0x89, 0x01], // 9 exit_status = 137, a two-byte varint
      ...[0x52, 0x02, 0x08, 0x01], // 10 exited_at: Timestamp{seconds: 1}
      ...[0x5a, 0x02, ...ascii("e1")], // 11 exec_id: 11 << 3 | 2 = 0x5a
    ];

    assert.equal(hex(toBinary(StateResponseSchema, res)), hex(expected));
  });

  it("KillRequest: signal=3, all=4", () => {
    const req = create(KillRequestSchema, { id: "c1", execId: "e1", signal: 9, all: true });
    const expected = [
      ...[0x0a, 0x02, ...ascii("c1")], // 1 id
      ...[0x12, 0x02, ...ascii("e1")], // 2 exec_id
      ...[0x18, 0x09], // 3 signal = SIGKILL
      ...[0x20, 0x01], // 4 all = true
    ];

    assert.equal(hex(toBinary(KillRequestSchema, req)), hex(expected));
  });

  it("ForwardRequest: an Envelope with a TaskExit event", () => {
    const exit = create(TaskExitSchema, {
      containerId: "c1",
      id: "c1",
      pid: 7,
      exitStatus: 1,
      exitedAt: { seconds: 3n },
    });
    const envelope = create(EnvelopeSchema, {
      timestamp: { seconds: 2n },
      namespace: "k8s.io",
      topic: "/tasks/exit",
      event: { typeUrl: "containerd.events.TaskExit", value: toBinary(TaskExitSchema, exit) },
    });
    const req = create(ForwardRequestSchema, { envelope });
    const expected = [
      ...[0x0a, 0x49], // ForwardRequest 1 envelope (73 bytes)
      ...[0x0a, 0x02, 0x08, 0x02], //   Envelope 1 timestamp: {seconds: 2}
      ...[0x12, 0x06, ...ascii("k8s.io")], //   Envelope 2 namespace
      ...[0x1a, 0x0b, ...ascii("/tasks/exit")], //   Envelope 3 topic
      ...[0x22, 0x2e], //   Envelope 4 event: an Any of 46 bytes
      ...[0x0a, 0x1a, ...ascii("containerd.events.TaskExit")], //     Any 1 type_url (26 bytes)
      ...[0x12, 0x10], //     Any 2 value (16 bytes)
      ...[0x0a, 0x02, ...ascii("c1")], //       TaskExit 1 container_id
      ...[0x12, 0x02, ...ascii("c1")], //       TaskExit 2 id
      ...[0x18, 0x07], //       TaskExit 3 pid
      ...[0x20, 0x01], //       TaskExit 4 exit_status
      ...[0x2a, 0x02, 0x08, 0x03], //       TaskExit 5 exited_at: {seconds: 3}
    ];

    assert.equal(hex(toBinary(ForwardRequestSchema, req)), hex(expected));
  });
});
