// OCI config.json <-> grpc.Spec: lossless round trips for every mapped field, proto3 zeros omitted on the
// guest side, and numbers a JS number or the wire type cannot hold refused with their JSON path.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, equals, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { isReflectMessage, reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { Code, isKataError } from "../../base/errors.js";
import { defaultSpec } from "../../oci/default-spec.js";
import type { Spec } from "../../oci/spec.js";
import { SpecSchema } from "../gen/oci_pb.js";
import { grpcToOciProcess, grpcToOciSpec, ociToGrpcProcess, ociToGrpcSpec, unmappedOciFields } from "./convert.js";

/** Every field the converter maps, each set to a distinct non-zero value. */
function fullSpec(): Spec {
  const hook = (n: number) => ({ path: `/hooks/h${n}`, args: [`h${n}`, "-v"], env: [`N=${n}`], timeout: n });
  const throttle = (n: number) => [{ major: 8, minor: n, rate: 1000 * n }];
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: true,
      consoleSize: { height: 24, width: 80 },
      user: { uid: 1001, gid: 1002, additionalGids: [1003, 1004], username: "app" },
      args: ["/bin/app", "--serve"],
      env: ["PATH=/usr/bin", "HOME=/home/app"],
      cwd: "/srv",
      capabilities: {
        bounding: ["CAP_CHOWN"],
        effective: ["CAP_KILL"],
        inheritable: ["CAP_SETUID"],
        permitted: ["CAP_SETGID"],
        ambient: ["CAP_NET_RAW"],
      },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 4096, soft: 2048 }],
      noNewPrivileges: true,
      apparmorProfile: "kata-default",
      oomScoreAdj: 42,
      selinuxLabel: "system_u:system_r:container_t:s0",
    },
    root: { path: "/run/kata/c1/rootfs", readonly: true },
    hostname: "pod1",
    mounts: [{ destination: "/data", type: "bind", source: "/host/data", options: ["rbind", "ro"] }],
    hooks: {
      prestart: [hook(1)],
      createRuntime: [hook(2)],
      createContainer: [hook(3)],
      startContainer: [hook(4)],
      poststart: [hook(5)],
      poststop: [hook(6)],
    },
    annotations: { "io.kubernetes.cri.container-type": "container" },
    linux: {
      uidMappings: [{ containerID: 1, hostID: 100000, size: 65536 }],
      gidMappings: [{ containerID: 2, hostID: 200000, size: 65535 }],
      sysctl: { "net.ipv4.ip_forward": "1" },
      resources: {
        devices: [
          { allow: false, access: "rwm" },
          { allow: true, type: "c", major: 10, minor: 229, access: "rw" },
        ],
        memory: {
          limit: 536870912,
          reservation: 268435456,
          swap: 1073741824,
          kernel: 67108864,
          kernelTCP: 33554432,
          swappiness: 60,
          disableOOMKiller: true,
        },
        cpu: {
          shares: 1024,
          quota: 50000,
          period: 100000,
          realtimeRuntime: 950,
          realtimePeriod: 1000,
          cpus: "0-1",
          mems: "0",
        },
        pids: { limit: 512 },
        blockIO: {
          weight: 500,
          leafWeight: 300,
          weightDevice: [{ major: 8, minor: 16, weight: 200, leafWeight: 100 }],
          throttleReadBpsDevice: throttle(1),
          throttleWriteBpsDevice: throttle(2),
          throttleReadIOPSDevice: throttle(3),
          throttleWriteIOPSDevice: throttle(4),
        },
        hugepageLimits: [{ pageSize: "2MB", limit: 209715200 }],
        network: { classID: 1048577, priorities: [{ name: "eth0", priority: 7 }] },
      },
      cgroupsPath: "/kata/c1",
      namespaces: [{ type: "pid" }, { type: "network", path: "/proc/1/ns/net" }, { type: "time" }],
      devices: [{ path: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o666, uid: 1001, gid: 1002 }],
      seccomp: {
        defaultAction: "SCMP_ACT_ERRNO",
        architectures: ["SCMP_ARCH_X86_64"],
        syscalls: [
          {
            names: ["personality"],
            action: "SCMP_ACT_ALLOW",
            args: [{ index: 1, value: 8, valueTwo: 255, op: "SCMP_CMP_MASKED_EQ" }],
          },
        ],
      },
      rootfsPropagation: "rslave",
      maskedPaths: ["/proc/kcore"],
      readonlyPaths: ["/proc/sys"],
      mountLabel: "system_u:object_r:container_file_t:s0",
      intelRdt: { l3CacheSchema: "L3:0=ff" },
    },
  };
}

// Solaris and Windows are placeholders with no OCI counterpart on Linux.
const skipped = new Set(["Solaris", "Windows"]);

/** Every field of the message tree, as a dotted path of proto field names. */
function protoFieldPaths(desc: DescMessage, at = ""): string[] {
  return desc.fields
    .filter((f) => !skipped.has(f.name))
    .flatMap((f) => {
      const p = `${at}.${f.name}`;
      const sub =
        f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message") ? f.message : undefined;
      return sub === undefined ? [p] : [p, ...protoFieldPaths(sub, p)];
    });
}

/** The fields set to a non-default value somewhere in `m` (any list element counts). */
function setFieldPaths(m: ReflectMessage, at = ""): string[] {
  return m.fields
    .filter((f) => m.isSet(f))
    .flatMap((f) => {
      const p = `${at}.${f.name}`;
      const v = m.get(f);
      if (isReflectMessage(v)) return [p, ...setFieldPaths(v, p)];
      if (f.fieldKind === "list" && f.listKind === "message") {
        return [p, ...[...m.get(f)].flatMap((e) => (isReflectMessage(e) ? setFieldPaths(e, p) : []))];
      }
      return [p];
    });
}

function assertInvalid(fn: () => unknown, path: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isKataError(e, Code.InvalidArgument), `expected INVALID_ARGUMENT, got ${String(e)}`);
    assert.ok(e.message.includes(path), `message "${e.message}" does not name ${path}`);
    assert.equal(e.details["path"], path);
    return true;
  });
}

describe("ociToGrpcSpec / grpcToOciSpec", () => {
  it("round-trips a spec that sets every mapped field", () => {
    const spec = fullSpec();

    const back = grpcToOciSpec(ociToGrpcSpec(spec));

    assert.deepEqual(back, spec);
    assert.deepEqual(unmappedOciFields(spec), []);
  });

  it("sets every grpc.Spec field on the wire from the full fixture", () => {
    const msg = ociToGrpcSpec(fullSpec());

    const set = new Set(setFieldPaths(reflect(SpecSchema, msg)));

    assert.deepEqual(
      protoFieldPaths(SpecSchema).filter((p) => !set.has(p)),
      [],
    );
  });

  it("round-trips the default spec", () => {
    const spec = defaultSpec();

    assert.deepEqual(grpcToOciSpec(ociToGrpcSpec(spec)), spec);
  });

  it("keeps the spec through the protobuf binary encoding", () => {
    const msg = ociToGrpcSpec(fullSpec());

    const decoded = fromBinary(SpecSchema, toBinary(SpecSchema, msg));

    assert.ok(equals(SpecSchema, decoded, msg));
    assert.deepEqual(grpcToOciSpec(decoded), fullSpec());
  });

  it("maps field names and int64 values onto Kata's proto fields", () => {
    const msg = ociToGrpcSpec(fullSpec());

    // One tuple: a per-field assert.equal would narrow `msg` and make the later `?.` look unnecessary.
    assert.deepEqual(
      [
        msg.Version,
        msg.Process?.User?.UID,
        msg.Process?.Rlimits[0]?.Hard,
        msg.Linux?.UIDMappings[0]?.HostID,
        msg.Linux?.Resources?.Memory?.Limit,
        msg.Linux?.Resources?.BlockIO?.ThrottleWriteIOPSDevice[0]?.Rate,
        msg.Linux?.IntelRdt?.L3CacheSchema,
      ],
      ["1.0.2", 1001, 4096n, 100000, 536870912n, 4000n, "L3:0=ff"],
    );
  });

  it("passes negative values where OCI allows them", () => {
    const spec = defaultSpec();
    spec.process = { ...spec.process, user: { uid: 0, gid: 0 }, cwd: "/", oomScoreAdj: -999 };
    spec.linux = { resources: { memory: { limit: -1, swap: -1 }, cpu: { quota: -1 }, pids: { limit: -1 } } };

    const msg = ociToGrpcSpec(spec);

    assert.deepEqual([msg.Linux?.Resources?.Memory?.Swap, msg.Linux?.Resources?.CPU?.Quota], [-1n, -1n]);
    assert.deepEqual(grpcToOciSpec(msg), spec);
  });

  it("sends a device rule's absent major/minor as the -1 wildcard and keeps a literal 0", () => {
    const spec: Spec = {
      ociVersion: "1.0.2",
      linux: {
        resources: { devices: [{ allow: true, type: "b", major: 8, minor: 0, access: "r" }, { allow: false }] },
      },
    };

    const msg = ociToGrpcSpec(spec);

    assert.deepEqual(
      msg.Linux?.Resources?.Devices.map((d) => [d.Major, d.Minor]),
      [
        [8n, 0n],
        [-1n, -1n],
      ],
    );
    assert.deepEqual(grpcToOciSpec(msg), spec);
  });
});

describe("grpcToOciSpec", () => {
  it("omits zero and empty wire values and keeps the fields OCI requires", () => {
    const msg = create(SpecSchema, {
      Version: "1.0.2",
      Process: { Cwd: "/", Capabilities: {}, Rlimits: [{ Type: "RLIMIT_CORE" }] },
      Root: { Path: "rootfs" },
      Mounts: [{ destination: "/tmp" }],
      Hooks: { Prestart: [{ Path: "/bin/true" }] },
      Linux: {
        Resources: {
          Memory: { Limit: 0n, Swap: 0n, Swappiness: 0n },
          CPU: { Shares: 0n, Quota: 0n, Period: 0n, Cpus: "" },
          Pids: { Limit: 0n },
          BlockIO: { Weight: 0 },
          Network: { ClassID: 0 },
          HugepageLimits: [{ Pagesize: "1GB", Limit: 0n }],
        },
        Namespaces: [{ Type: "mount" }],
        Devices: [{ Path: "/dev/sda", Type: "b", Major: 8n, Minor: 0n }],
        Seccomp: { DefaultAction: "SCMP_ACT_ALLOW", Syscalls: [{ Names: ["ptrace"], Action: "SCMP_ACT_ERRNO" }] },
        IntelRdt: { L3CacheSchema: "" },
      },
    });

    // Through the encoding: an empty but present sub-message (Capabilities) must survive the wire too.
    const spec = grpcToOciSpec(fromBinary(SpecSchema, toBinary(SpecSchema, msg)));

    assert.deepEqual(spec, {
      ociVersion: "1.0.2",
      process: {
        user: { uid: 0, gid: 0 },
        cwd: "/",
        capabilities: {},
        rlimits: [{ type: "RLIMIT_CORE", hard: 0, soft: 0 }],
      },
      root: { path: "rootfs" },
      mounts: [{ destination: "/tmp" }],
      hooks: { prestart: [{ path: "/bin/true" }] },
      linux: {
        resources: { hugepageLimits: [{ pageSize: "1GB", limit: 0 }] },
        namespaces: [{ type: "mount" }],
        devices: [{ path: "/dev/sda", type: "b", major: 8, minor: 0 }],
        seccomp: { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["ptrace"], action: "SCMP_ACT_ERRNO" }] },
      },
    });
    assert.ok(!JSON.stringify(spec).includes('"memory"'));
  });

  it("refuses an int64 beyond the safe-integer range, naming its JSON path", () => {
    const msg = create(SpecSchema, { Linux: { Resources: { Memory: { Limit: 2n ** 62n } } } });

    assertInvalid(() => grpcToOciSpec(msg), "linux.resources.memory.limit");
  });

  it("refuses a uint64 rlimit such as RLIM_INFINITY, naming its JSON path", () => {
    const msg = create(SpecSchema, { Process: { Rlimits: [{ Type: "RLIMIT_AS", Hard: 2n ** 64n - 1n, Soft: 1n }] } });

    assertInvalid(() => grpcToOciSpec(msg), "process.rlimits[0].hard");
  });

  it("refuses an unknown namespace type", () => {
    const msg = create(SpecSchema, { Linux: { Namespaces: [{ Type: "pid" }, { Type: "bogus" }] } });

    assertInvalid(() => grpcToOciSpec(msg), "linux.namespaces[1].type");
  });
});

describe("ociToGrpcSpec refusals", () => {
  it("refuses an integer outside the safe range, naming its JSON path", () => {
    const spec: Spec = { ociVersion: "1.0.2", linux: { resources: { memory: { limit: 2 ** 53 } } } };

    assertInvalid(() => ociToGrpcSpec(spec), "linux.resources.memory.limit");
  });

  it("refuses a negative value for an unsigned field", () => {
    const spec: Spec = { ociVersion: "1.0.2", linux: { resources: { cpu: { shares: -2 } } } };

    assertInvalid(() => ociToGrpcSpec(spec), "linux.resources.cpu.shares");
  });

  it("refuses a uint32 out of range and a fraction", () => {
    const uid: Spec = { ociVersion: "1.0.2", process: { user: { uid: 2 ** 32, gid: 0 }, cwd: "/" } };
    const hook: Spec = { ociVersion: "1.0.2", hooks: { poststop: [{ path: "/x" }, { path: "/y", timeout: 1.5 }] } };

    assertInvalid(() => ociToGrpcSpec(uid), "process.user.uid");
    assertInvalid(() => ociToGrpcSpec(hook), "hooks.poststop[1].timeout");
  });

  // Found by convert.fuzz.test.ts: the guest's decoder dropped the entry without a word.
  it("refuses a __proto__ map key, which the guest side could not decode", () => {
    // CAST (two below): JSON.parse makes __proto__ an own key, as config.json would; the shape is a Spec.
    const annotations = JSON.parse('{"ociVersion":"1.0.2","annotations":{"__proto__":"x"}}') as Spec;
    const sysctl = JSON.parse('{"ociVersion":"1.0.2","linux":{"sysctl":{"__proto__":"1"}}}') as Spec;

    assertInvalid(() => ociToGrpcSpec(annotations), "annotations.__proto__");
    assertInvalid(() => ociToGrpcSpec(sysctl), "linux.sysctl.__proto__");
  });
});

describe("unmappedOciFields", () => {
  it("names the set fields grpc.Spec cannot carry", () => {
    const spec = fullSpec();
    spec.domainname = "example.org";
    spec.mounts = [{ destination: "/m", uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }] }];
    spec.linux = {
      seccomp: {
        defaultAction: "SCMP_ACT_ERRNO",
        defaultErrnoRet: 38,
        syscalls: [{ names: ["x"], action: "SCMP_ACT_ERRNO", errnoRet: 1 }],
      },
    };

    assert.deepEqual(unmappedOciFields(spec), [
      "domainname",
      "mounts[0].uidMappings",
      "linux.seccomp.defaultErrnoRet",
      "linux.seccomp.syscalls[0].errnoRet",
    ]);
  });
});

describe("ociToGrpcProcess / grpcToOciProcess", () => {
  it("round-trips a process alone, for ExecProcess", () => {
    const process = fullSpec().process;
    assert.ok(process !== undefined);

    const back = grpcToOciProcess(ociToGrpcProcess(process));

    assert.deepEqual(back, process);
  });

  it("names process paths in errors", () => {
    assertInvalid(
      () =>
        ociToGrpcProcess({ user: { uid: 0, gid: 0 }, cwd: "/", rlimits: [{ type: "RLIMIT_AS", hard: -1, soft: 0 }] }),
      "process.rlimits[0].hard",
    );
  });
});
