import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { defaultSpec } from "./default-spec.js";
import { parseSpec } from "./parse-spec.js";

type Json = Record<string, unknown>;

/** The default spec as untrusted JSON, changed by `patch`. */
function specJson(patch: (s: Json) => void = () => undefined): Json {
  // CAST: a JSON round trip of a Spec is a JSON object.
  const s = JSON.parse(JSON.stringify(defaultSpec())) as Json;
  patch(s);
  return s;
}

/** The object at `key` of `o`, for patching nested fields. */
function obj(o: Json, key: string): Json {
  const v = o[key];
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${key} is not an object`);
  // CAST: checked just above.
  return v as Json;
}

interface Rule {
  readonly name: string;
  readonly patch: (s: Json) => void;
  /** The problem as parseSpec words it: "<json path> <message>". */
  readonly problem: string;
}

const rules: Rule[] = [
  { name: "ociVersion is required", patch: (s) => delete s["ociVersion"], problem: "ociVersion is required" },
  {
    name: "ociVersion is a string",
    patch: (s) => (s["ociVersion"] = 1),
    problem: "ociVersion must be a string, not a number",
  },
  { name: "root is required", patch: (s) => delete s["root"], problem: "root is required" },
  { name: "root is an object", patch: (s) => (s["root"] = "rootfs"), problem: "root must be an object, not a string" },
  { name: "root.path is required", patch: (s) => delete obj(s, "root")["path"], problem: "root.path is required" },
  {
    name: "root.path is a string",
    patch: (s) => (obj(s, "root")["path"] = ["rootfs"]),
    problem: "root.path must be a string, not an array",
  },
  {
    name: "root.path is not empty",
    patch: (s) => (obj(s, "root")["path"] = ""),
    problem: "root.path must not be empty",
  },
  {
    name: "root.readonly is a boolean",
    patch: (s) => (obj(s, "root")["readonly"] = "yes"),
    problem: "root.readonly must be a boolean, not a string",
  },
  {
    name: "process is an object",
    patch: (s) => (s["process"] = []),
    problem: "process must be an object, not an array",
  },
  {
    name: "process.terminal is a boolean",
    patch: (s) => (obj(s, "process")["terminal"] = 1),
    problem: "process.terminal must be a boolean, not a number",
  },
  {
    name: "process.user is required",
    patch: (s) => delete obj(s, "process")["user"],
    problem: "process.user is required",
  },
  {
    name: "process.user.uid is required",
    patch: (s) => delete obj(obj(s, "process"), "user")["uid"],
    problem: "process.user.uid is required",
  },
  {
    name: "process.user.gid is an integer",
    patch: (s) => (obj(obj(s, "process"), "user")["gid"] = 1.5),
    problem: "process.user.gid must be an integer, not a number",
  },
  {
    name: "process.user.uid is not negative",
    patch: (s) => (obj(obj(s, "process"), "user")["uid"] = -1),
    problem: "process.user.uid must be >= 0",
  },
  {
    name: "process.user.umask is not negative",
    patch: (s) => (obj(obj(s, "process"), "user")["umask"] = -18),
    problem: "process.user.umask must be >= 0",
  },
  {
    name: "process.user.additionalGids is an array",
    patch: (s) => (obj(obj(s, "process"), "user")["additionalGids"] = 10),
    problem: "process.user.additionalGids must be an array, not a number",
  },
  {
    name: "process.user.additionalGids holds integers",
    patch: (s) => (obj(obj(s, "process"), "user")["additionalGids"] = [10, "wheel"]),
    problem: "process.user.additionalGids[1] must be an integer, not a string",
  },
  {
    name: "process.args is an array of strings",
    patch: (s) => (obj(s, "process")["args"] = "sh -c true"),
    problem: "process.args must be an array of strings, not a string",
  },
  {
    name: "process.env holds strings",
    patch: (s) => (obj(s, "process")["env"] = ["A=1", null]),
    problem: "process.env[1] must be a string, not null",
  },
  {
    name: "process.cwd is required",
    patch: (s) => delete obj(s, "process")["cwd"],
    problem: "process.cwd is required",
  },
  {
    name: "process.cwd is absolute",
    patch: (s) => (obj(s, "process")["cwd"] = "home"),
    problem: "process.cwd must be an absolute path",
  },
  {
    name: "process.noNewPrivileges is a boolean",
    patch: (s) => (obj(s, "process")["noNewPrivileges"] = "true"),
    problem: "process.noNewPrivileges must be a boolean, not a string",
  },
  {
    name: "process.oomScoreAdj is a safe integer",
    patch: (s) => (obj(s, "process")["oomScoreAdj"] = 2 ** 53),
    problem: "process.oomScoreAdj must be an integer, not a number",
  },
  {
    name: "process.capabilities is an object",
    patch: (s) => (obj(s, "process")["capabilities"] = ["CAP_KILL"]),
    problem: "process.capabilities must be an object, not an array",
  },
  {
    name: "process.capabilities sets are arrays of strings",
    patch: (s) => (obj(obj(s, "process"), "capabilities")["inheritable"] = "CAP_KILL"),
    problem: "process.capabilities.inheritable must be an array of strings, not a string",
  },
  {
    name: "process.rlimits is an array",
    patch: (s) => (obj(s, "process")["rlimits"] = {}),
    problem: "process.rlimits must be an array, not an object",
  },
  {
    name: "process.rlimits entries are objects",
    patch: (s) => (obj(s, "process")["rlimits"] = ["RLIMIT_NOFILE"]),
    problem: "process.rlimits[0] must be an object, not a string",
  },
  {
    name: "process.rlimits[].type is required",
    patch: (s) => (obj(s, "process")["rlimits"] = [{ hard: 1, soft: 1 }]),
    problem: "process.rlimits[0].type is required",
  },
  {
    name: "process.rlimits[].hard is required",
    patch: (s) => (obj(s, "process")["rlimits"] = [{ type: "RLIMIT_NOFILE", soft: 1 }]),
    problem: "process.rlimits[0].hard is required",
  },
  {
    name: "process.rlimits[].soft is not negative",
    patch: (s) => (obj(s, "process")["rlimits"] = [{ type: "RLIMIT_NOFILE", hard: 1, soft: -1 }]),
    problem: "process.rlimits[0].soft must be >= 0",
  },
  {
    name: "hostname is a string",
    patch: (s) => (s["hostname"] = false),
    problem: "hostname must be a string, not a boolean",
  },
  { name: "mounts is an array", patch: (s) => (s["mounts"] = {}), problem: "mounts must be an array, not an object" },
  {
    name: "mounts entries are objects",
    patch: (s) => (s["mounts"] = [null]),
    problem: "mounts[0] must be an object, not null",
  },
  {
    name: "mounts[].destination is required",
    patch: (s) => (s["mounts"] = [{ type: "tmpfs" }]),
    problem: "mounts[0].destination is required",
  },
  {
    name: "mounts[].destination is absolute",
    patch: (s) => (s["mounts"] = [{ destination: "tmp" }]),
    problem: "mounts[0].destination must be an absolute path",
  },
  {
    name: "mounts[].type is a string",
    patch: (s) => (s["mounts"] = [{ destination: "/tmp", type: 1 }]),
    problem: "mounts[0].type must be a string, not a number",
  },
  {
    name: "mounts[].source is a string",
    patch: (s) => (s["mounts"] = [{ destination: "/tmp", source: {} }]),
    problem: "mounts[0].source must be a string, not an object",
  },
  {
    name: "mounts[].options holds strings",
    patch: (s) => (s["mounts"] = [{ destination: "/tmp", options: ["ro", 1] }]),
    problem: "mounts[0].options[1] must be a string, not a number",
  },
  { name: "hooks is an object", patch: (s) => (s["hooks"] = []), problem: "hooks must be an object, not an array" },
  {
    name: "each hook list is an array",
    patch: (s) => (s["hooks"] = { poststop: { path: "/bin/true" } }),
    problem: "hooks.poststop must be an array, not an object",
  },
  {
    name: "hook entries are objects",
    patch: (s) => (s["hooks"] = { createRuntime: ["/bin/true"] }),
    problem: "hooks.createRuntime[0] must be an object, not a string",
  },
  {
    name: "hook path is required",
    patch: (s) => (s["hooks"] = { prestart: [{ args: ["x"] }] }),
    problem: "hooks.prestart[0].path is required",
  },
  {
    name: "hook path is absolute",
    patch: (s) => (s["hooks"] = { startContainer: [{ path: "bin/true" }] }),
    problem: "hooks.startContainer[0].path must be an absolute path",
  },
  {
    name: "hook args hold strings",
    patch: (s) => (s["hooks"] = { poststart: [{ path: "/bin/true", args: [true] }] }),
    problem: "hooks.poststart[0].args[0] must be a string, not a boolean",
  },
  {
    name: "hook env is an array of strings",
    patch: (s) => (s["hooks"] = { createContainer: [{ path: "/bin/true", env: "A=1" }] }),
    problem: "hooks.createContainer[0].env must be an array of strings, not a string",
  },
  {
    name: "hook timeout is at least 1",
    patch: (s) => (s["hooks"] = { prestart: [{ path: "/bin/true", timeout: 0 }] }),
    problem: "hooks.prestart[0].timeout must be >= 1",
  },
  {
    name: "annotations is an object of strings",
    patch: (s) => (s["annotations"] = ["a=b"]),
    problem: "annotations must be an object of strings, not an array",
  },
  {
    name: "annotation values are strings",
    patch: (s) => (s["annotations"] = { "io.kata.x": 1 }),
    problem: "annotations.io.kata.x must be a string, not a number",
  },
  { name: "linux is an object", patch: (s) => (s["linux"] = true), problem: "linux must be an object, not a boolean" },
  {
    name: "linux.cgroupsPath is a string",
    patch: (s) => (obj(s, "linux")["cgroupsPath"] = 5),
    problem: "linux.cgroupsPath must be a string, not a number",
  },
  {
    name: "linux.sysctl values are strings",
    patch: (s) => (obj(s, "linux")["sysctl"] = { "net.ipv4.ip_forward": 1 }),
    problem: "linux.sysctl.net.ipv4.ip_forward must be a string, not a number",
  },
  {
    name: "linux.maskedPaths is an array of strings",
    patch: (s) => (obj(s, "linux")["maskedPaths"] = "/proc/kcore"),
    problem: "linux.maskedPaths must be an array of strings, not a string",
  },
  {
    name: "linux.readonlyPaths holds strings",
    patch: (s) => (obj(s, "linux")["readonlyPaths"] = [{}]),
    problem: "linux.readonlyPaths[0] must be a string, not an object",
  },
  {
    name: "linux.namespaces is an array",
    patch: (s) => (obj(s, "linux")["namespaces"] = { pid: {} }),
    problem: "linux.namespaces must be an array, not an object",
  },
  {
    name: "linux.namespaces entries are objects",
    patch: (s) => (obj(s, "linux")["namespaces"] = ["pid"]),
    problem: "linux.namespaces[0] must be an object, not a string",
  },
  {
    name: "linux.namespaces[].type is required",
    patch: (s) => (obj(s, "linux")["namespaces"] = [{ path: "/proc/1/ns/net" }]),
    problem: "linux.namespaces[0].type is required",
  },
  {
    name: "linux.namespaces[].type is a known namespace",
    patch: (s) => (obj(s, "linux")["namespaces"] = [{ type: "pid" }, { type: "net" }]),
    problem: 'linux.namespaces[1].type unknown namespace "net"',
  },
  {
    name: "linux.namespaces[].path is a string",
    patch: (s) => (obj(s, "linux")["namespaces"] = [{ type: "network", path: 3 }]),
    problem: "linux.namespaces[0].path must be a string, not a number",
  },
  {
    name: "linux.resources is an object",
    patch: (s) => (obj(s, "linux")["resources"] = "unlimited"),
    problem: "linux.resources must be an object, not a string",
  },
];

describe("parseSpec", () => {
  it("returns a valid spec as it is", () => {
    const json = specJson();

    const spec = parseSpec(json);

    assert.equal(spec, json);
    assert.deepEqual(spec, defaultSpec());
  });

  it("accepts keys it does not know, at every level", () => {
    const json = specJson((s) => {
      s["windows"] = { layerFolders: [] };
      obj(s, "process")["ioPriority"] = { class: "IOPRIO_CLASS_IDLE" };
      obj(s, "linux")["seccomp"] = { defaultAction: "SCMP_ACT_ALLOW" };
    });

    const spec = parseSpec(json);

    assert.equal(spec, json);
  });

  it("accepts a spec without the optional process, mounts, hooks and linux", () => {
    const json = { ociVersion: "1.0.2", root: { path: "rootfs" } };

    const spec = parseSpec(json);

    assert.deepEqual(spec, { ociVersion: "1.0.2", root: { path: "rootfs" } });
  });

  for (const top of [null, [], "config", 42]) {
    it(`refuses ${JSON.stringify(top)} as a whole document, naming the file`, () => {
      const call = (): unknown => parseSpec(top, "/b/config.json");

      assert.throws(call, kataError(Code.InvalidArgument, /^\/b\/config\.json: must be a JSON object, not /));
    });
  }

  for (const rule of rules) {
    it(`checks that ${rule.name}`, () => {
      const json = specJson(rule.patch);

      const call = (): unknown => parseSpec(json, "/b/config.json");

      assert.throws(call, kataError(Code.InvalidArgument, `/b/config.json: ${rule.problem}`));
    });
  }

  it("reports every problem at once, in one message, in document order", () => {
    const json = specJson((s) => {
      delete s["ociVersion"];
      obj(s, "root")["path"] = "";
      obj(s, "process")["cwd"] = "relative";
      s["mounts"] = [{ destination: "tmp" }, { destination: "/ok", options: [1] }];
      obj(s, "linux")["namespaces"] = [{ type: "bogus" }];
    });

    const call = (): unknown => parseSpec(json);

    assert.throws(
      call,
      kataError(
        Code.InvalidArgument,
        "config.json: ociVersion is required; root.path must not be empty; process.cwd must be an absolute path; " +
          "mounts[0].destination must be an absolute path; mounts[1].options[0] must be a string, not a number; " +
          'linux.namespaces[0].type unknown namespace "bogus"',
      ),
    );
  });

  it("names config.json when no file is given", () => {
    const call = (): unknown => parseSpec({ root: { path: "rootfs" } });

    assert.throws(call, kataError(Code.InvalidArgument, /^config\.json: ociVersion is required$/));
  });
});
