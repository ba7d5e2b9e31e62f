// parseProcess and parseLinuxResources: config.json's rules for the parts containerd sends on their own.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { defaultSpec } from "./default-spec.js";
import { parseLinuxResources, parseProcess, parseSpec } from "./parse-spec.js";

/** An exec's process as containerd sends it, changed by `patch`. */
function processJson(patch: (p: Record<string, unknown>) => void = () => undefined): Record<string, unknown> {
  // CAST: a JSON round trip of a Process is a JSON object.
  const p = JSON.parse(JSON.stringify(defaultSpec({ args: ["sh"] }).process)) as Record<string, unknown>;
  patch(p);
  return p;
}

describe("parseProcess", () => {
  it("returns a valid process as it is", () => {
    const json = processJson();

    assert.equal(parseProcess(json, "exec spec"), json);
  });

  it("requires a process object", () => {
    assert.throws(
      () => parseProcess(undefined, "exec spec"),
      kataError(Code.InvalidArgument, "exec spec: process is required"),
    );
    assert.throws(
      () => parseProcess([], "exec spec"),
      kataError(Code.InvalidArgument, "exec spec: process must be an object, not an array"),
    );
  });

  const cases: [string, (p: Record<string, unknown>) => void, string][] = [
    ["args", (p) => (p["args"] = "sh -c true"), "process.args must be an array of strings, not a string"],
    ["env", (p) => (p["env"] = ["A=1", 2]), "process.env[1] must be a string, not a number"],
    ["cwd", (p) => (p["cwd"] = "tmp"), "process.cwd must be an absolute path"],
    ["user", (p) => (p["user"] = { uid: -1, gid: 0 }), "process.user.uid must be >= 0"],
    ["terminal", (p) => (p["terminal"] = "yes"), "process.terminal must be a boolean, not a string"],
    ["consoleSize", (p) => (p["consoleSize"] = { height: 24 }), "process.consoleSize.width is required"],
    [
      "capabilities",
      (p) => (p["capabilities"] = { bounding: [1] }),
      "process.capabilities.bounding[0] must be a string, not a number",
    ],
    ["rlimits", (p) => (p["rlimits"] = [{ type: "RLIMIT_NOFILE", hard: 1 }]), "process.rlimits[0].soft is required"],
  ];
  for (const [field, patch, problem] of cases) {
    it(`checks ${field} as config.json does, naming the path`, () => {
      const json = processJson(patch);

      assert.throws(() => parseProcess(json, "exec spec"), kataError(Code.InvalidArgument, `exec spec: ${problem}`));
      const spec = { ociVersion: "1.0.2", root: { path: "rootfs" }, process: json };
      assert.throws(() => parseSpec(spec), kataError(Code.InvalidArgument, `config.json: ${problem}`));
    });
  }

  it("names the request in the error, and lists every problem at once", () => {
    const json = processJson((p) => {
      p["args"] = [1];
      delete p["cwd"];
    });

    assert.throws(
      () => parseProcess(json, "exec e1"),
      kataError(
        Code.InvalidArgument,
        "exec e1: process.args[0] must be a string, not a number",
        "process.cwd is required",
      ),
    );
  });
});

describe("parseLinuxResources", () => {
  it("returns valid resources as they are, unknown keys included", () => {
    const json = {
      devices: [
        { allow: false, access: "rwm" },
        { allow: true, type: "c", major: 1, minor: 3, access: "rw" },
      ],
      memory: { limit: 268435456, swap: -1, swappiness: 60, disableOOMKiller: false },
      cpu: { shares: 1024, quota: -1, period: 100000, cpus: "0-1", mems: "0", burst: 0 },
      pids: { limit: 100 },
      blockIO: { weight: 500, throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }] },
      hugepageLimits: [{ pageSize: "2MB", limit: 0 }],
      network: { classID: 1, priorities: [{ name: "eth0", priority: 1 }] },
      unified: { "memory.high": "max" },
      rdma: {},
    };

    assert.equal(parseLinuxResources(json, "update c1"), json);
  });

  it("requires a resources object", () => {
    assert.throws(
      () => parseLinuxResources("max", "update c1"),
      kataError(Code.InvalidArgument, "update c1: resources must be an object, not a string"),
    );
  });

  const cases: [string, Record<string, unknown>, string][] = [
    ["memory.limit", { memory: { limit: "1G" } }, "memory.limit must be an integer, not a string"],
    ["memory.swappiness", { memory: { swappiness: -1 } }, "memory.swappiness must be >= 0"],
    ["cpu.shares", { cpu: { shares: 1.5 } }, "cpu.shares must be an integer, not a number"],
    ["cpu.cpus", { cpu: { cpus: 2 } }, "cpu.cpus must be a string, not a number"],
    ["pids.limit", { pids: {} }, "pids.limit is required"],
    ["devices", { devices: {} }, "devices must be an array, not an object"],
    ["devices[].allow", { devices: [{ access: "rwm" }] }, "devices[0].allow is required"],
    ["devices[].type", { devices: [{ allow: true, type: "x" }] }, 'devices[0].type must be "a", "b" or "c", not "x"'],
    [
      "devices[].access",
      { devices: [{ allow: true, access: "rwx" }] },
      'devices[0].access must be made of r, w and m, not "rwx"',
    ],
    [
      "blockIO throttling",
      { blockIO: { throttleWriteIOPSDevice: [{ major: 8, minor: 0 }] } },
      "blockIO.throttleWriteIOPSDevice[0].rate is required",
    ],
    ["hugepageLimits", { hugepageLimits: [{ limit: 1 }] }, "hugepageLimits[0].pageSize is required"],
    [
      "network.priorities",
      { network: { priorities: [{ name: "eth0", priority: -2 }] } },
      "network.priorities[0].priority must be >= 0",
    ],
    ["unified", { unified: { "cpu.max": 1 } }, "unified.cpu.max must be a string, not a number"],
  ];
  for (const [field, json, problem] of cases) {
    it(`checks ${field} as config.json does, naming the path`, () => {
      assert.throws(
        () => parseLinuxResources(json, "update c1"),
        kataError(Code.InvalidArgument, `update c1: resources.${problem}`),
      );
      const spec = { ociVersion: "1.0.2", root: { path: "rootfs" }, linux: { resources: json } };
      assert.throws(() => parseSpec(spec), kataError(Code.InvalidArgument, `config.json: linux.resources.${problem}`));
    });
  }
});

describe("nesting depth", () => {
  /** `levels` arrays, one inside the other. */
  const nested = (levels: number): unknown => {
    let v: unknown = [];
    for (let i = 1; i < levels; i++) v = [v];
    return v;
  };

  it("refuses a spec, an exec's process or an update's resources nested past 64 levels, naming the field", () => {
    const spec = { ...defaultSpec(), annotations: { a: nested(64) } };

    assert.throws(
      () => parseSpec(spec, "/b/config.json"),
      kataError(Code.InvalidArgument, "/b/config.json: annotations.a[0]", "more than 64 deep"),
    );
    assert.throws(
      () =>
        parseProcess(
          processJson((p) => (p["args"] = nested(64))),
          "exec spec",
        ),
      kataError(Code.InvalidArgument, "exec spec: process.args[0]", "more than 64 deep"),
    );
    assert.throws(
      () => parseLinuxResources({ devices: nested(64) }, "update"),
      kataError(Code.InvalidArgument, "update: resources.devices[0]", "more than 64 deep"),
    );
  });

  it("accepts 64 levels", () => {
    const spec = { ...defaultSpec(), annotations: {}, x: nested(63) };

    assert.doesNotThrow(() => parseSpec(spec));
  });
});
