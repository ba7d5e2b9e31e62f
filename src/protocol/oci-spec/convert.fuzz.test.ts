// Property-based tests of the OCI <-> grpc.Spec mapping. One schema of the OCI spec below drives both the
// generator (valid-shaped specs, with numbers in and out of each wire type's range) and the model of the
// conventions in convert.ts: which numbers are refused (and under which JSON path), and what a spec looks
// like after ociToGrpc -> wire bytes -> grpcToOci.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { Code } from "../../base/errors.js";
import type * as oci from "../../oci/spec.js";
import { fuzzParams, onlyKataError } from "../../../test/helpers/fuzz.js";
import { ProcessSchema, SpecSchema } from "../gen/oci_pb.js";
import { grpcToOciProcess, grpcToOciSpec, ociToGrpcProcess, ociToGrpcSpec } from "./convert.js";

type Wire = "u32" | "u64" | "i64";
type Node =
  | { t: "str"; arb?: fc.Arbitrary<string> }
  | { t: "bool" }
  | { t: "num"; wire: Wire }
  | { t: "strs" }
  | { t: "map" }
  | { t: "list"; of: Node }
  | { t: "obj"; fields: Record<string, Field>; group?: true; post?: (input: Obj, out: Obj) => void };

interface Field {
  readonly node: Node;
  /** Always generated; kept on the way back even when zero (convert.ts: required fields are always emitted). */
  readonly req?: true;
  /** Not in grpc.Spec: dropped by ociToGrpcSpec (unmappedOciFields), never range-checked. */
  readonly dropped?: true;
  /** Device cgroup major/minor: absent travels as -1 (the wildcard), and 0 is a real number. */
  readonly wildcard?: true;
  /** Required, but 0 means "unset" and drops the enclosing group (pids.limit). */
  readonly unset0?: true;
}

type Obj = Record<string, unknown>;

const str = (arb?: fc.Arbitrary<string>): Node => (arb === undefined ? { t: "str" } : { t: "str", arb });
const bool: Node = { t: "bool" };
const u32: Node = { t: "num", wire: "u32" };
const u64: Node = { t: "num", wire: "u64" };
const i64: Node = { t: "num", wire: "i64" };
const strs: Node = { t: "strs" };
const map: Node = { t: "map" };
const list = (of: Node): Node => ({ t: "list", of });
const obj = (fields: Record<string, Field | Node>, opts: { group?: true; post?: (i: Obj, o: Obj) => void } = {}) =>
  ({
    t: "obj",
    fields: Object.fromEntries(Object.entries(fields).map(([k, f]) => [k, "node" in f ? f : { node: f }])),
    ...opts,
  }) satisfies Node;
const req = (node: Node): Field => ({ node, req: true });
const dropped = (node: Node): Field => ({ node, dropped: true });

const idMap = obj({ containerID: req(u32), hostID: req(u32), size: req(u32) });
const hook = obj({ path: req(str()), args: strs, env: strs, timeout: i64 });
const throttle = list(obj({ major: req(i64), minor: req(i64), rate: req(u64) }));
const namespaceTypes = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"];

const processNode = obj({
  terminal: bool,
  consoleSize: obj({ height: req(u32), width: req(u32) }),
  user: req(obj({ uid: req(u32), gid: req(u32), umask: dropped(u32), additionalGids: list(u32), username: str() })),
  args: strs,
  commandLine: dropped(str()),
  env: strs,
  cwd: req(str()),
  capabilities: obj({ bounding: strs, effective: strs, inheritable: strs, permitted: strs, ambient: strs }),
  rlimits: list(obj({ type: req(str()), hard: req(u64), soft: req(u64) })),
  noNewPrivileges: bool,
  apparmorProfile: str(),
  oomScoreAdj: i64,
  selinuxLabel: str(),
});

const resourcesNode = obj({
  devices: list(
    obj({
      allow: req(bool),
      type: str(),
      major: { node: i64, wildcard: true },
      minor: { node: i64, wildcard: true },
      access: str(),
    }),
  ),
  memory: obj(
    {
      limit: i64,
      reservation: i64,
      swap: i64,
      kernel: i64,
      kernelTCP: i64,
      swappiness: u64,
      disableOOMKiller: bool,
      useHierarchy: dropped(bool),
    },
    { group: true },
  ),
  cpu: obj(
    { shares: u64, quota: i64, period: u64, realtimeRuntime: i64, realtimePeriod: u64, cpus: str(), mems: str() },
    { group: true },
  ),
  pids: obj({ limit: { node: i64, req: true, unset0: true } }, { group: true }),
  blockIO: obj(
    {
      weight: u32,
      leafWeight: u32,
      weightDevice: list(obj({ major: req(i64), minor: req(i64), weight: u32, leafWeight: u32 })),
      throttleReadBpsDevice: throttle,
      throttleWriteBpsDevice: throttle,
      throttleReadIOPSDevice: throttle,
      throttleWriteIOPSDevice: throttle,
    },
    { group: true },
  ),
  hugepageLimits: list(obj({ pageSize: req(str()), limit: req(u64) })),
  network: obj({ classID: u32, priorities: list(obj({ name: req(str()), priority: req(u32) })) }, { group: true }),
  unified: dropped(map),
});

const linuxDevice = obj(
  {
    path: req(str()),
    type: req(str(fc.constantFrom("c", "b", "u", "p"))),
    // Required unless the type is "p" (runtime-spec config-linux.md), so always generated.
    major: req(i64),
    minor: req(i64),
    fileMode: u32,
    uid: u32,
    gid: u32,
  },
  {
    // linux.ts: a fifo has no device number, so its 0 major/minor is omitted; for other types 0 is real.
    post: (input, out) => {
      if (input["type"] === "p" && input["major"] === 0) delete out["major"];
      if (input["type"] === "p" && input["minor"] === 0) delete out["minor"];
    },
  },
);

const specNode = obj({
  ociVersion: req(str()),
  process: processNode,
  root: obj({ path: req(str()), readonly: bool }),
  hostname: str(),
  domainname: dropped(str()),
  mounts: list(
    obj({
      destination: req(str()),
      type: str(),
      source: str(),
      options: strs,
      uidMappings: dropped(list(idMap)),
      gidMappings: dropped(list(idMap)),
    }),
  ),
  hooks: obj({
    prestart: list(hook),
    createRuntime: list(hook),
    createContainer: list(hook),
    startContainer: list(hook),
    poststart: list(hook),
    poststop: list(hook),
  }),
  annotations: map,
  linux: obj({
    uidMappings: list(idMap),
    gidMappings: list(idMap),
    sysctl: map,
    resources: resourcesNode,
    cgroupsPath: str(),
    namespaces: list(obj({ type: req(str(fc.constantFrom(...namespaceTypes))), path: str() })),
    devices: list(linuxDevice),
    seccomp: obj({
      defaultAction: req(str()),
      defaultErrnoRet: dropped(u32),
      architectures: strs,
      flags: dropped(strs),
      listenerPath: dropped(str()),
      listenerMetadata: dropped(str()),
      syscalls: list(
        obj({
          names: req(strs),
          action: req(str()),
          errnoRet: dropped(u32),
          args: list(obj({ index: req(u64), value: req(u64), valueTwo: u64, op: req(str()) })),
        }),
      ),
    }),
    rootfsPropagation: str(),
    maskedPaths: strs,
    readonlyPaths: strs,
    mountLabel: str(),
    intelRdt: obj({ closID: dropped(str()), l3CacheSchema: str(), memBwSchema: dropped(str()) }, { group: true }),
    personality: dropped(obj({ domain: req(str()), flags: strs })),
  }),
});

// ---- the generator ----

// Whole code points only: a lone surrogate (JSON allows "\ud800") becomes U+FFFD in the wire's UTF-8,
// as Go's encoding/json already makes it when containerd reads config.json, so it is not asserted here.
const anyString = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 6 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 4 }) },
);

/** "__proto__" is a key JSON.parse keeps as an own property, and one the wire cannot carry. */
const mapKey = fc.oneof({ weight: 20, arbitrary: anyString }, { weight: 1, arbitrary: fc.constant("__proto__") });

const inRange: Record<Wire, fc.Arbitrary<number>> = {
  u32: fc.oneof(fc.nat({ max: 70_000 }), fc.constantFrom(0, 0xffff_ffff)),
  u64: fc.oneof(fc.nat({ max: 70_000 }), fc.constantFrom(0, 2 ** 32, Number.MAX_SAFE_INTEGER)),
  i64: fc.oneof(
    fc.integer({ min: -70_000, max: 70_000 }),
    fc.constantFrom(0, -1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER),
  ),
};

/** Numbers JSON can hold that some wire type cannot (or that are not integers). */
const outOfRange = fc.constantFrom(-1, -0.5, 0.5, 2 ** 32, 2 ** 53, -(2 ** 53), 1e300, -1e300, Number.MIN_VALUE);

function arb(node: Node, hostile: boolean, depth = 0): fc.Arbitrary<unknown> {
  switch (node.t) {
    case "str":
      return node.arb ?? anyString;
    case "bool":
      return fc.boolean();
    case "num":
      return hostile
        ? fc.oneof({ weight: 12, arbitrary: inRange[node.wire] }, { weight: 1, arbitrary: outOfRange })
        : inRange[node.wire];
    case "strs":
      return fc.array(anyString, { maxLength: 3 });
    case "map":
      return fc.dictionary(mapKey, anyString, { maxKeys: 3, noNullPrototype: true });
    case "list":
      return fc.array(arb(node.of, hostile, depth + 1), { maxLength: depth > 2 ? 1 : 2 });
    case "obj": {
      const entries = Object.entries(node.fields);
      const model = Object.fromEntries(entries.map(([k, f]) => [k, arb(f.node, hostile, depth + 1)]));
      const requiredKeys = entries.filter(([, f]) => f.req === true).map(([k]) => k);
      return fc.record(model, { requiredKeys, noNullPrototype: true });
    }
  }
}

// ---- the model ----

/** JSON has no -0 worth keeping: it crosses the wire as 0. */
function fits(wire: Wire, v: number): boolean {
  if (!Number.isSafeInteger(v)) return false;
  if (wire === "i64") return true;
  return v >= 0 && (wire === "u64" || v <= 0xffff_ffff);
}

/** JSON paths of the numbers ociToGrpc must refuse (any one of them may be the one it names). */
function badPaths(node: Node, v: unknown, at: string, out: string[]): string[] {
  if (v === undefined) return out;
  // CAST (four below): `v` was generated by arb(node), so it has the shape `node` describes.
  if (node.t === "num" && !fits(node.wire, v as number)) out.push(at);
  if (node.t === "map" && Object.hasOwn(v as Obj, "__proto__")) out.push(`${at}.__proto__`);
  if (node.t === "list") (v as unknown[]).forEach((x, i) => badPaths(node.of, x, `${at}[${i}]`, out));
  if (node.t === "obj") {
    for (const [k, f] of Object.entries(node.fields)) {
      if (f.dropped !== true) badPaths(f.node, (v as Obj)[k], at === "" ? k : `${at}.${k}`, out);
    }
  }
  return out;
}

/** Whether an optional field with this value is omitted by the guest side (the proto3 zero value). */
function isZero(f: Field, v: unknown): boolean {
  if (f.wildcard === true) return v === -1;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === "object" && v !== null && f.node.t === "map") return Object.keys(v).length === 0;
  return v === "" || v === false || v === 0;
}

/** What `v` (generated by arb(node)) looks like after the round trip, or undefined when it is omitted. */
function expected(node: Node, v: unknown): unknown {
  switch (node.t) {
    case "num":
      // JSON's -0 crosses the wire as 0.
      return v === 0 ? 0 : v;
    case "list":
      // CAST: `v` was generated by arb(node).
      return (v as unknown[]).map((x) => expected(node.of, x));
    case "map":
    case "strs":
    case "str":
    case "bool":
      return v;
    case "obj": {
      // CAST: `v` was generated by arb(node).
      const input = v as Obj;
      const out: Obj = {};
      for (const [k, f] of Object.entries(node.fields)) {
        const x = input[k];
        if (x === undefined || f.dropped === true) continue;
        if (f.unset0 === true && x === 0) continue;
        if (f.req !== true && isZero(f, x)) continue;
        const e = expected(f.node, x);
        if (e !== undefined) out[k] = e;
      }
      node.post?.(input, out);
      return node.group === true && Object.keys(out).length === 0 ? undefined : out;
    }
  }
}

function checkRefusal(e: { code: string; message: string; details: Readonly<Record<string, unknown>> }, bad: string[]) {
  assert.equal(e.code, Code.InvalidArgument);
  const path = e.details["path"];
  assert.ok(typeof path === "string" && bad.includes(path), `${e.message}: path not among ${bad.join(", ")}`);
  assert.ok(e.message.includes(path), `${e.message} names ${path}`);
}

describe("ociToGrpcSpec / grpcToOciSpec (fuzz)", () => {
  for (const hostile of [false, true]) {
    const what = hostile ? "any JSON numbers" : "numbers in range";
    it(`refuses a number naming its JSON path, or round-trips every mapped field (${what})`, () => {
      fc.assert(
        fc.property(arb(specNode, hostile), (generated) => {
          // CAST: arb(specNode) builds the shape of oci.Spec.
          const spec = generated as oci.Spec;
          const before = structuredClone(spec);

          const r = onlyKataError(() => ociToGrpcSpec(spec));
          const bad = badPaths(specNode, spec, "", []);

          assert.deepEqual(spec, before, "the input is not modified");
          if (!r.ok) {
            checkRefusal(r.error, bad);
            return;
          }
          assert.deepEqual(bad, [], "every out-of-range number is refused");
          const back = grpcToOciSpec(fromBinary(SpecSchema, toBinary(SpecSchema, r.value)));
          assert.deepEqual(back, expected(specNode, spec));
        }),
        fuzzParams(hostile ? 300 : 200),
      );
    });
  }

  it("round-trips a process alone (ExecProcess), with paths under process", () => {
    fc.assert(
      fc.property(arb(processNode, true), (generated) => {
        // CAST: arb(processNode) builds the shape of oci.Process.
        const process = generated as oci.Process;

        const r = onlyKataError(() => ociToGrpcProcess(process));
        const bad = badPaths(processNode, process, "process", []);

        if (!r.ok) {
          checkRefusal(r.error, bad);
          return;
        }
        assert.deepEqual(bad, []);
        const back = grpcToOciProcess(fromBinary(ProcessSchema, toBinary(ProcessSchema, r.value)));
        assert.deepEqual(back, expected(processNode, process));
      }),
      fuzzParams(300),
    );
  });
});
