// config.json's `linux` fields beyond the basics of parse-spec.test.ts, the exec process and UpdateTask's
// resources. Each case here was a TypeError (or a misleading message) in the grpc.Spec mapping before
// validation checked the field; the minimal documents are the fuzzer's (parse-spec.fuzz.test.ts).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { ociToGrpcSpec } from "../protocol/oci-spec/convert.js";
import { kataError } from "../../test/helpers/fakes.js";
import { parseLinuxResources, parseProcess, parseSpec } from "./parse-spec.js";

const spec = (extra: Record<string, unknown>): unknown => ({ ociVersion: "1.0.2", root: { path: "rootfs" }, ...extra });

const refusals: { doc: Record<string, unknown>; problem: string }[] = [
  {
    doc: { linux: { resources: { hugepageLimits: [null] } } },
    problem: "linux.resources.hugepageLimits[0] must be an object, not null",
  },
  { doc: { linux: { devices: 5 } }, problem: "linux.devices must be an array, not a number" },
  {
    doc: { linux: { resources: { devices: {} } } },
    problem: "linux.resources.devices must be an array, not an object",
  },
  { doc: { linux: { uidMappings: [null] } }, problem: "linux.uidMappings[0] must be an object, not null" },
  {
    doc: { linux: { seccomp: { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{}] } } },
    problem: "linux.seccomp.syscalls[0].names is required; linux.seccomp.syscalls[0].action is required",
  },
  {
    doc: { linux: { devices: [{ path: "/dev/null", type: "c" }] } },
    problem: "linux.devices[0].major is required; linux.devices[0].minor is required",
  },
  {
    doc: { process: { user: { uid: 0, gid: 0 }, cwd: "/", consoleSize: 5 } },
    problem: "process.consoleSize must be an object, not a number",
  },
  {
    doc: { linux: { resources: { memory: { limit: "1G" } } } },
    problem: "linux.resources.memory.limit must be an integer, not a string",
  },
  { doc: { linux: { resources: { pids: {} } } }, problem: "linux.resources.pids.limit is required" },
  { doc: { linux: { intelRdt: { l3CacheSchema: 1 } } }, problem: "linux.intelRdt.l3CacheSchema must be a string" },
];

describe("parseSpec: linux and the other fields the mapping reads", () => {
  for (const { doc, problem } of refusals) {
    it(`refuses ${JSON.stringify(doc)}`, () => {
      assert.throws(() => parseSpec(spec(doc)), kataError(Code.InvalidArgument, `config.json: ${problem}`));
    });
  }

  it("accepts a fifo without a device number, and a full linux section the mapping takes", () => {
    const doc = spec({
      linux: {
        devices: [
          { path: "/dev/fifo", type: "p" },
          { path: "/dev/sda", type: "b", major: 8, minor: 0, fileMode: 0o660, uid: 0, gid: 6 },
        ],
        resources: {
          devices: [{ allow: false, access: "rwm" }],
          memory: { limit: 1 << 30, swap: -1, swappiness: 0 },
          cpu: { quota: -1, period: 100000, cpus: "0-1" },
          pids: { limit: 100 },
          blockIO: { weight: 500, throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 0 }] },
          hugepageLimits: [{ pageSize: "2MB", limit: 0 }],
          network: { classID: 1, priorities: [{ name: "eth0", priority: 2 }] },
        },
        seccomp: { defaultAction: "SCMP_ACT_ERRNO", syscalls: [{ names: [], action: "SCMP_ACT_ALLOW" }] },
        uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
        intelRdt: { l3CacheSchema: "L3:0=ff" },
        personality: { domain: "LINUX" },
      },
    });

    const parsed = parseSpec(doc);

    assert.equal(ociToGrpcSpec(parsed).Linux?.Devices.length, 2);
  });
});

describe("parseProcess", () => {
  it("refuses a process without user, naming what it is for", () => {
    assert.throws(
      () => parseProcess({ cwd: "/", args: ["sh"] }, "exec e1: spec"),
      kataError(Code.InvalidArgument, "exec e1: spec: process.user is required"),
    );
  });

  it("refuses a missing process", () => {
    assert.throws(
      () => parseProcess(undefined, "exec e1: spec"),
      kataError(Code.InvalidArgument, "process is required"),
    );
  });

  it("returns a valid process as it is", () => {
    const p = { user: { uid: 1, gid: 1 }, cwd: "/srv", args: ["sh"], env: ["A=1"] };

    assert.equal(parseProcess(p, "exec e1: spec"), p);
  });
});

describe("parseLinuxResources", () => {
  it("refuses a resources update with a wrong type, with its path", () => {
    assert.throws(
      () => parseLinuxResources({ cpu: { shares: "many" } }, "update c1: resources"),
      kataError(Code.InvalidArgument, "update c1: resources: resources.cpu.shares must be an integer, not a string"),
    );
    assert.throws(
      () => parseLinuxResources(null, "update c1: resources"),
      kataError(Code.InvalidArgument, "resources must be an object, not null"),
    );
  });

  it("returns valid resources as they are", () => {
    const r = { memory: { limit: 1 << 20 }, pids: { limit: 10 } };

    assert.equal(parseLinuxResources(r, "update c1: resources"), r);
  });
});
