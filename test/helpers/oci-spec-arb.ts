// A schema of the OCI runtime-spec config.json (the parts src/oci/spec.ts types), for the property-based
// tests: it generates valid-shaped specs, and tells what each field is (required, mapped to grpc.Spec or
// dropped, its wire number type) so that each test can model what its module must do with it.

import fc from "fast-check";

export type Wire = "u32" | "u64" | "i64";
/**
 * One field type. `num.min`: generated mostly at or above it (where the OCI spec sets a floor). `obj.group`:
 * omitted on the way back when nothing in it is set (convert.ts). `obj.post`: adjusts the expected output
 * of the round trip for a rule of that object alone.
 */
export type Node =
  | { t: "str"; arb?: fc.Arbitrary<string> }
  | { t: "bool" }
  | { t: "num"; wire: Wire; min?: number }
  | { t: "strs" }
  | { t: "map" }
  | { t: "list"; of: Node }
  | { t: "obj"; fields: Record<string, Field>; group?: true; post?: (input: Obj, out: Obj) => void };

export interface Field {
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

export type Obj = Record<string, unknown>;

/** Mostly absolute paths, for the fields config.json validation wants absolute. */
const absPath = fc.oneof({ weight: 19, arbitrary: fc.string({ maxLength: 6 }).map((s) => `/${s}`) }, fc.string());

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
// OCI: a hook's timeout must be greater than zero.
const hook = obj({ path: req(str(absPath)), args: strs, env: strs, timeout: { t: "num", wire: "i64", min: 1 } });
const throttle = list(obj({ major: req(i64), minor: req(i64), rate: req(u64) }));
const namespaceTypes = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"];

export const processNode = obj({
  terminal: bool,
  consoleSize: obj({ height: req(u32), width: req(u32) }),
  user: req(obj({ uid: req(u32), gid: req(u32), umask: dropped(u32), additionalGids: list(u32), username: str() })),
  args: strs,
  commandLine: dropped(str()),
  env: strs,
  cwd: req(str(absPath)),
  capabilities: obj({ bounding: strs, effective: strs, inheritable: strs, permitted: strs, ambient: strs }),
  rlimits: list(obj({ type: req(str()), hard: req(u64), soft: req(u64) })),
  noNewPrivileges: bool,
  apparmorProfile: str(),
  oomScoreAdj: i64,
  selinuxLabel: str(),
});

export const resourcesNode = obj({
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

export const specNode = obj({
  ociVersion: req(str()),
  process: processNode,
  root: obj({ path: req(str(absPath)), readonly: bool }),
  hostname: str(),
  domainname: dropped(str()),
  mounts: list(
    obj({
      destination: req(str(absPath)),
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

export interface ArbMode {
  /** Numbers out of their wire type's range now and then (about one number in 13). */
  readonly hostile?: boolean;
  /**
   * Now and then (about one field in 31) any JSON value instead of the field's own, or a required field
   * left out: config.json as a careless or hostile author writes it.
   */
  readonly wild?: boolean;
}

const wildValue = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant(undefined));

/** Values of `node`'s shape. With `wild`, pass the result through JSON (the undefineds are left-out fields). */
export function arb(node: Node, mode: ArbMode = {}, depth = 0): fc.Arbitrary<unknown> {
  const own = shaped(node, mode, depth);
  return mode.wild === true ? fc.oneof({ weight: 30, arbitrary: own }, { weight: 1, arbitrary: wildValue }) : own;
}

function shaped(node: Node, mode: ArbMode, depth: number): fc.Arbitrary<unknown> {
  switch (node.t) {
    case "str":
      return node.arb ?? anyString;
    case "bool":
      return fc.boolean();
    case "num": {
      const valid =
        node.min === undefined
          ? inRange[node.wire]
          : fc.oneof({ weight: 9, arbitrary: fc.integer({ min: node.min, max: 70_000 }) }, inRange[node.wire]);
      return mode.hostile === true
        ? fc.oneof({ weight: 12, arbitrary: valid }, { weight: 1, arbitrary: outOfRange })
        : valid;
    }
    case "strs":
      return fc.array(anyString, { maxLength: 3 });
    case "map":
      return fc.dictionary(mapKey, anyString, { maxKeys: 3, noNullPrototype: true });
    case "list":
      return fc.array(arb(node.of, mode, depth + 1), { maxLength: depth > 2 ? 1 : 2 });
    case "obj": {
      const entries = Object.entries(node.fields);
      const model = Object.fromEntries(entries.map(([k, f]) => [k, arb(f.node, mode, depth + 1)]));
      const requiredKeys = entries.filter(([, f]) => f.req === true).map(([k]) => k);
      return fc.record(model, { requiredKeys, noNullPrototype: true });
    }
  }
}
