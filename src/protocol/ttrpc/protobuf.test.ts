// Round trips and exact wire bytes of the generated messages: the bytes pin Kata's and ttRPC's
// field numbers, which is what wire compatibility rests on.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CreateContainerRequestSchema, StorageSchema } from "../gen/agent_pb.js";
import { SpecSchema } from "../gen/oci_pb.js";
import { FSGroupChangePolicy } from "../gen/types_pb.js";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/request_pb.js";

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

describe("agent messages", () => {
  const spec = create(SpecSchema, {
    Version: "1.0.2",
    Hostname: "pod1",
    Process: {
      Terminal: false,
      User: { UID: 1000, GID: 1000, AdditionalGids: [10, 20] },
      Args: ["/bin/sh", "-c", "echo hi"],
      Env: ["PATH=/usr/bin:/bin"],
      Cwd: "/",
      Capabilities: { Bounding: ["CAP_CHOWN"], Effective: ["CAP_CHOWN"] },
      Rlimits: [{ Type: "RLIMIT_NOFILE", Hard: 1024n, Soft: 1024n }],
      OOMScoreAdj: -500n,
    },
    Root: { Path: "/run/kata-containers/shared/containers/c1/rootfs", Readonly: true },
    Mounts: [{ destination: "/dev/shm", source: "/run/kata-containers/sandbox/shm", type: "bind", options: ["rbind"] }],
    Hooks: { Prestart: [{ Path: "/bin/true", Timeout: 5n }], CreateRuntime: [{ Path: "/bin/hook" }] },
    Annotations: { "io.kubernetes.cri.container-type": "container" },
    Linux: {
      Namespaces: [{ Type: "pid" }, { Type: "network", Path: "/proc/1/ns/net" }],
      Resources: {
        Memory: { Limit: 256n << 20n },
        CPU: { Quota: 50_000n, Period: 100_000n, Cpus: "0-1" },
        Devices: [{ Allow: false, Access: "rwm" }],
      },
      Seccomp: {
        DefaultAction: "SCMP_ACT_ERRNO",
        Syscalls: [{ Names: ["read"], Action: "SCMP_ACT_ALLOW", Args: [{ Index: 0n, Value: 1n, Op: "SCMP_CMP_EQ" }] }],
      },
      Sysctl: { "net.ipv4.ip_forward": "1" },
      MaskedPaths: ["/proc/kcore"],
    },
  });

  it("round-trips a CreateContainerRequest with a Spec and Storages", () => {
    const req = create(CreateContainerRequestSchema, {
      containerId: "c1",
      execId: "c1",
      OCI: spec,
      storages: [
        {
          driver: "9p",
          source: "kataShared",
          fstype: "9p",
          options: ["trans=virtio"],
          mountPoint: "/run/kata-containers/shared/containers/",
        },
        {
          driver: "ephemeral",
          source: "tmpfs",
          mountPoint: "/run/kata-containers/sandbox/ephemeral/cache",
          fsGroup: { groupId: 2000, groupChangePolicy: FSGroupChangePolicy.OnRootMismatch },
          shared: true,
        },
      ],
      devices: [{ id: "0000:00:02.0", type: "blk", containerPath: "/dev/vdb" }],
      stringUser: { uid: "1000", gid: "1000" },
      sandboxPidns: true,
    });

    const back = fromBinary(CreateContainerRequestSchema, toBinary(CreateContainerRequestSchema, req));

    assert.ok(equals(CreateContainerRequestSchema, back, req));
    assert.equal(back.OCI?.Linux?.Resources?.Memory?.Limit, 268435456n);
    assert.equal(back.OCI.Process?.OOMScoreAdj, -500n);
    assert.equal(back.storages[1]?.fsGroup?.groupChangePolicy, FSGroupChangePolicy.OnRootMismatch);
    assert.deepEqual(back.OCI.Annotations, { "io.kubernetes.cri.container-type": "container" });
  });

  it("puts the Kata field numbers on the wire", () => {
    const req = create(CreateContainerRequestSchema, {
      OCI: { Version: "1.0.2" },
      sandboxPidns: true,
      agentPidns: true,
    });
    const storage = create(StorageSchema, {
      fsGroup: { groupId: 1000, groupChangePolicy: FSGroupChangePolicy.OnRootMismatch },
      shared: true,
    });

    // OCI = 6 (0x32), sandbox_pidns = 7 (0x38), agent_pidns = 8 (0x40); Spec.Version = 1.
    assert.equal(
      hex(toBinary(CreateContainerRequestSchema, req)),
      "3207" + "0a05" + hex(Buffer.from("1.0.2")) + "3801" + "4001",
    );
    // fs_group = 7 { group_id = 2, group_change_policy = 3 }, shared = 8.
    assert.equal(hex(toBinary(StorageSchema, storage)), "3a05" + "10e807" + "1801" + "4001");
  });
});

describe("ttrpc envelope", () => {
  it("encodes a Request with the ttrpc field numbers and decodes it back", () => {
    const req = create(RequestSchema, {
      service: "grpc.Health",
      method: "Check",
      payload: Buffer.from([0x0a, 0x01, 0x61]),
      timeoutNano: 1000n,
      metadata: [{ key: "k", value: "v" }],
    });

    const bytes = toBinary(RequestSchema, req);

    const expected =
      "0a0b" +
      hex(Buffer.from("grpc.Health")) +
      "1205" +
      hex(Buffer.from("Check")) +
      "1a030a0161" +
      "20e807" +
      "2a060a016b120176";
    assert.equal(hex(bytes), expected);
    assert.ok(equals(RequestSchema, fromBinary(RequestSchema, bytes), req));
  });

  it("encodes a Response with a google.rpc.Status and decodes it back", () => {
    const res = create(ResponseSchema, { status: { code: 5, message: "nf" }, payload: Buffer.from([1, 2]) });

    const bytes = toBinary(ResponseSchema, res);
    const back = fromBinary(ResponseSchema, bytes);

    assert.equal(hex(bytes), "0a06" + "0805" + "12026e66" + "12020102");
    assert.equal(back.status?.code, 5);
    assert.equal(back.status.message, "nf");
    assert.deepEqual([...back.payload], [1, 2]);
  });
});
