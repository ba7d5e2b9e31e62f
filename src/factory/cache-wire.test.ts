import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GrpcStatusSchema, GrpcVMConfigSchema, GrpcVMSchema, GrpcVMStatusSchema } from "../protocol/gen/cache_pb.js";
import {
  cacheDirOf,
  cacheMismatches,
  encodeCachedVm,
  encodeCacheRecord,
  maxCacheMessageBytes,
  parseCachedVm,
  parseCacheRecord,
  protoCodec,
} from "./cache-wire.js";
import { templateNic, type TemplateRecord, type TemplateRequest } from "./template-plan.js";

const file = (p: string) => ({ path: p, sizeBytes: 10, mtimeMs: 1 });
const record: TemplateRecord = {
  version: 1,
  createdAt: "2026-01-01T00:00:00.000Z",
  accel: "tcg",
  binary: "/usr/bin/qemu-system-x86_64",
  machineType: "microvm",
  vcpus: 1,
  memoryMiB: 2048,
  hotplug: null,
  kernelParams: ["quiet"],
  kernel: file("/k"),
  initrd: file("/i"),
  disks: [],
  taps: [],
  nics: [],
  balloon: false,
  stateBytes: 0,
  warmup: "container",
};
const request: TemplateRequest = {
  accel: "tcg",
  binary: "/usr/bin/qemu-system-x86_64",
  spec: {
    machineType: "microvm",
    vcpus: 1,
    memoryMiB: 2048,
    kernelPath: "/k",
    initrdPath: "/i",
    kernelParams: ["quiet"],
  },
  kernel: file("/k"),
  initrd: file("/i"),
  disks: [],
  nics: [],
  ownNetns: false,
};

describe("VM cache wire format", () => {
  it("Kata's field numbers: GrpcVM, GrpcVMConfig, GrpcStatus and GrpcVMStatus encode as cache.proto says", () => {
    // Tag bytes (field << 3 | wire type) of each field, checked against the upstream numbering.
    const vm = toBinary(
      GrpcVMSchema,
      create(GrpcVMSchema, {
        id: "a",
        hypervisor: Buffer.from("b"),
        proxyPid: 3n,
        proxyURL: "c",
        cpu: 5,
        memory: 6,
        cpuDelta: 7,
      }),
    );
    assert.deepEqual(
      [...vm].filter((_, i) => [0, 3, 6, 8, 11, 13, 15].includes(i)),
      [0x0a, 0x12, 0x18, 0x22, 0x28, 0x30, 0x38],
    );
    const cfg = toBinary(
      GrpcVMConfigSchema,
      create(GrpcVMConfigSchema, { Data: Buffer.from("x"), AgentConfig: Buffer.from("y") }),
    );
    assert.deepEqual([...cfg], [0x0a, 1, 0x78, 0x12, 1, 0x79]);
    const st = create(GrpcStatusSchema, {
      pid: 42n,
      vmstatus: [create(GrpcVMStatusSchema, { pid: 7n, cpu: 1, memory: 2 })],
    });
    assert.deepEqual([...toBinary(GrpcStatusSchema, st)], [0x08, 42, 0x12, 6, 0x08, 7, 0x10, 1, 0x18, 2]);
    assert.deepEqual(fromBinary(GrpcStatusSchema, toBinary(GrpcStatusSchema, st)).vmstatus[0]?.pid, 7n);
  });

  it("a handed-out VM round-trips, and its paths are in the cache's directory", () => {
    const dir = cacheDirOf("/run/kata-ts/cache.sock");
    const codec = protoCodec(GrpcVMSchema);
    const got = parseCachedVm(
      codec.deserialize(codec.serialize(encodeCachedVm({ id: "cache-3", pid: 1234, vcpus: 1, memoryMiB: 2048 }))),
      dir,
    );
    assert.deepEqual(got, {
      id: "cache-3",
      pid: 1234,
      vcpus: 1,
      memoryMiB: 2048,
      vmDir: "/run/kata-ts/cache.sock.d/vm/cache-3",
      shareRoot: "/run/kata-ts/cache.sock.d/share/cache-3",
      controlSocket: "/run/kata-ts/cache.sock.d/vm/cache-3/guard.sock",
    });
  });

  it("refuses a GrpcVM whose id could name another path, or without a pid", () => {
    const dir = "/run/c.d";
    const bad = (id: string, h: string) => create(GrpcVMSchema, { id, hypervisor: Buffer.from(h) });
    assert.throws(() => parseCachedVm(bad("../../etc", '{"pid":5}'), dir), /GrpcVM.id "..\/..\/etc" is not ours/);
    assert.throws(() => parseCachedVm(bad("cache-1", "{}"), dir), /pid is missing/);
    assert.throws(() => parseCachedVm(bad("cache-1", "nope"), dir), /not JSON/);
  });

  it("refuses messages over the size limit before decoding them", () => {
    assert.throws(
      () => protoCodec(GrpcVMSchema).deserialize(Buffer.alloc(maxCacheMessageBytes + 1)),
      /cache.GrpcVM larger than/,
    );
    assert.throws(() => parseCacheRecord(Buffer.alloc(maxCacheMessageBytes + 1)), /Data is too large/);
  });

  it("config matching: the same VM matches; vCPUs, memory, kernel or a NIC do not, each named", () => {
    assert.deepEqual(cacheMismatches(parseCacheRecord(encodeCacheRecord(record)), request), []);
    const other: TemplateRequest = {
      ...request,
      spec: { ...request.spec, vcpus: 2, memoryMiB: 4096 },
      kernel: file("/k2"),
      nics: [{ tapName: "tap0_kata", mac: "02:00:00:00:00:01" }],
    };
    const m = cacheMismatches(record, other);
    assert.equal(m.length, 4, m.join("\n"));
    assert.match(m.join("\n"), /^vcpus: cached VM 1, sandbox 2$/m);
    assert.match(m.join("\n"), /^memory MiB: cached VM 2048, sandbox 4096$/m);
    assert.match(m.join("\n"), /^kernel: cached VM /m);
    assert.match(m.join("\n"), /^NICs: the cached VM has none, the sandbox 1$/m);
  });

  it("a cached VM with the template's NIC serves one pod interface or none, and names why not three", () => {
    const withNic: TemplateRecord = { ...record, taps: [templateNic.tapName], nics: [templateNic] };
    const pod = (n: number) => ({
      ...request,
      ownNetns: true,
      nics: Array.from({ length: n }, (_, i) => ({ tapName: `tap${i}_kata`, mac: `02:00:00:00:00:0${i}` })),
    });
    assert.deepEqual(cacheMismatches(withNic, pod(0)), []);
    assert.deepEqual(cacheMismatches(withNic, pod(1)), []);
    assert.deepEqual(cacheMismatches(withNic, pod(3)), [
      "NICs: the cached VM has one, the sandbox 3 (a cached VM cannot get more)",
    ]);
  });
});
