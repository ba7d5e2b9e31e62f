// OCI runtime-spec config.json <-> Kata's protobuf grpc.Spec (proto/oci.proto). The host converts before
// CreateContainer/ExecProcess; the guest converts back and writes the result as config.json for crun.
// https://github.com/opencontainers/runtime-spec/blob/main/config.md

/**
 * Conventions of this mapping:
 *
 * - proto3 scalars have no "unset": an absent OCI field travels as 0, "" or []. The guest side therefore
 *   omits every optional OCI field whose wire value is zero or empty, so crun sees a valid, minimal spec.
 *   For limits, quotas, shares, periods and weights a literal 0 would be a real (and usually fatal)
 *   setting, so 0 means "unset" in both directions. The cost: an optional OCI value whose 0 is meaningful
 *   cannot cross as 0. That is `linux.resources.memory.swappiness` 0, `process.oomScoreAdj` 0 (the
 *   container inherits the agent's score), `linux.devices[].fileMode/uid/gid` 0 (the runtime defaults
 *   apply: mode 0666, owner 0) and `hooks.*[].timeout` 0 (invalid in OCI anyway).
 * - Sub-messages keep presence on the wire, so a present message becomes a present object even when
 *   empty (`process.capabilities: {}` stays "no capabilities" instead of becoming "not specified").
 *   Exceptions, omitted when empty: the resource groups (memory, cpu, pids, blockIO, network), where `{}`
 *   sets nothing, and `linux.intelRdt`, whose mere presence makes a runtime require resctrl.
 * - Required OCI fields are always emitted (`ociVersion`, `process.user.uid/gid`, `process.cwd`,
 *   `root.path`, ...). Inside a list element the element itself is the intent, so its required numbers
 *   stay even when 0 (`hugepageLimits[].limit` 0 forbids that page size; `throttle*[].rate` 0 clears).
 * - Device cgroup rules: an absent major/minor is the wildcard and travels as -1, which is how Kata 1.x's
 *   agent read it (rustjail `resources_grpc_to_oci`). 0 stays the literal number: minor 0 is common
 *   (`b 8:0` is /dev/sda) and reading it as a wildcard would widen the rule.
 * - int64/uint64 <-> number: a value outside Number's safe-integer range (or not an integer) is refused
 *   with INVALID_ARGUMENT naming its OCI JSON path, as is a uint32 out of range. Signed fields pass
 *   negative values through (`memory.swap` -1 = unlimited, `cpu.quota` -1 = no quota).
 * - OCI fields the proto lacks are dropped by `ociToGrpcSpec`; `unmappedOciFields` names the ones set.
 */

import { create, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, KataError } from "../base/errors.js";
import type * as oci from "../oci/spec.js";
import * as grpc from "./gen/oci_pb.js";

/** Host side. Throws KataError(INVALID_ARGUMENT) for a number the wire type cannot carry. */
export function ociToGrpcSpec(spec: oci.Spec): grpc.Spec {
  return create(grpc.SpecSchema, {
    Version: spec.ociVersion,
    Process: spec.process && processInit(spec.process, "process"),
    Root: spec.root && { Path: spec.root.path, Readonly: spec.root.readonly ?? false },
    Hostname: spec.hostname ?? "",
    Mounts: (spec.mounts ?? []).map((m) => ({
      destination: m.destination,
      source: m.source ?? "",
      type: m.type ?? "",
      options: copy(m.options),
    })),
    Hooks: spec.hooks && hooksInit(spec.hooks),
    Annotations: { ...spec.annotations },
    Linux: spec.linux && linuxInit(spec.linux),
  });
}

/** Guest side: a valid runtime-spec for crun. Throws KataError(INVALID_ARGUMENT) naming the JSON path. */
export function grpcToOciSpec(spec: grpc.Spec): oci.Spec {
  const hooks = spec.Hooks;
  return prune<oci.Spec>({
    ociVersion: spec.Version,
    process: spec.Process && processOut(spec.Process, "process"),
    root: spec.Root && prune<oci.Root>({ path: spec.Root.Path, readonly: flag(spec.Root.Readonly) }),
    hostname: str(spec.Hostname),
    mounts: each(spec.Mounts, (m) =>
      prune<oci.Mount>({
        destination: m.destination,
        type: str(m.type),
        source: str(m.source),
        options: list(m.options),
      }),
    ),
    hooks:
      hooks &&
      prune<oci.Hooks>({
        prestart: hooksOut(hooks.Prestart, "hooks.prestart"),
        createRuntime: hooksOut(hooks.CreateRuntime, "hooks.createRuntime"),
        createContainer: hooksOut(hooks.CreateContainer, "hooks.createContainer"),
        startContainer: hooksOut(hooks.StartContainer, "hooks.startContainer"),
        poststart: hooksOut(hooks.Poststart, "hooks.poststart"),
        poststop: hooksOut(hooks.Poststop, "hooks.poststop"),
      }),
    annotations: record(spec.Annotations),
    linux: spec.Linux && linuxOut(spec.Linux),
  });
}

/** `process` alone, for ExecProcess. Error paths start at `process`. */
export function ociToGrpcProcess(process: oci.Process): grpc.Process {
  return create(grpc.ProcessSchema, processInit(process, "process"));
}

export function grpcToOciProcess(process: grpc.Process): oci.Process {
  return processOut(process, "process");
}

/** JSON paths of the fields set in `spec` that grpc.Spec cannot carry, so the caller can warn or refuse. */
export function unmappedOciFields(spec: oci.Spec): string[] {
  const found: string[] = [];
  const check = (path: string, value: unknown): void => {
    if (value !== undefined) found.push(path);
  };
  check("domainname", spec.domainname);
  check("process.commandLine", spec.process?.commandLine);
  check("process.user.umask", spec.process?.user.umask);
  spec.mounts?.forEach((m, i) => {
    check(`mounts[${i}].uidMappings`, m.uidMappings);
    check(`mounts[${i}].gidMappings`, m.gidMappings);
  });
  const linux = spec.linux;
  check("linux.resources.unified", linux?.resources?.unified);
  check("linux.resources.memory.useHierarchy", linux?.resources?.memory?.useHierarchy);
  check("linux.seccomp.defaultErrnoRet", linux?.seccomp?.defaultErrnoRet);
  check("linux.seccomp.flags", linux?.seccomp?.flags);
  check("linux.seccomp.listenerPath", linux?.seccomp?.listenerPath);
  check("linux.seccomp.listenerMetadata", linux?.seccomp?.listenerMetadata);
  linux?.seccomp?.syscalls?.forEach((s, i) => {
    check(`linux.seccomp.syscalls[${i}].errnoRet`, s.errnoRet);
  });
  check("linux.intelRdt.closID", linux?.intelRdt?.closID);
  check("linux.intelRdt.memBwSchema", linux?.intelRdt?.memBwSchema);
  check("linux.personality", linux?.personality);
  return found;
}

// ---- OCI -> protobuf ----

type Init<S extends DescMessage> = MessageInitShape<S>;

function processInit(p: oci.Process, at: string): Init<typeof grpc.ProcessSchema> {
  const caps = p.capabilities;
  return {
    Terminal: p.terminal ?? false,
    ConsoleSize: p.consoleSize && {
      Height: u32(p.consoleSize.height, `${at}.consoleSize.height`),
      Width: u32(p.consoleSize.width, `${at}.consoleSize.width`),
    },
    User: {
      UID: u32(p.user.uid, `${at}.user.uid`),
      GID: u32(p.user.gid, `${at}.user.gid`),
      AdditionalGids: (p.user.additionalGids ?? []).map((g, i) => u32(g, `${at}.user.additionalGids[${i}]`)),
      Username: p.user.username ?? "",
    },
    Args: copy(p.args),
    Env: copy(p.env),
    Cwd: p.cwd,
    Capabilities: caps && {
      Bounding: copy(caps.bounding),
      Effective: copy(caps.effective),
      Inheritable: copy(caps.inheritable),
      Permitted: copy(caps.permitted),
      Ambient: copy(caps.ambient),
    },
    Rlimits: (p.rlimits ?? []).map((r, i) => ({
      Type: r.type,
      Hard: u64(r.hard, `${at}.rlimits[${i}].hard`),
      Soft: u64(r.soft, `${at}.rlimits[${i}].soft`),
    })),
    NoNewPrivileges: p.noNewPrivileges ?? false,
    ApparmorProfile: p.apparmorProfile ?? "",
    OOMScoreAdj: i64(p.oomScoreAdj ?? 0, `${at}.oomScoreAdj`),
    SelinuxLabel: p.selinuxLabel ?? "",
  };
}

function hooksInit(h: oci.Hooks): Init<typeof grpc.HooksSchema> {
  const hookList = (hooks: oci.Hook[] | undefined, at: string): Init<typeof grpc.HookSchema>[] =>
    (hooks ?? []).map((k, i) => ({
      Path: k.path,
      Args: copy(k.args),
      Env: copy(k.env),
      Timeout: i64(k.timeout ?? 0, `${at}[${i}].timeout`),
    }));
  return {
    Prestart: hookList(h.prestart, "hooks.prestart"),
    CreateRuntime: hookList(h.createRuntime, "hooks.createRuntime"),
    CreateContainer: hookList(h.createContainer, "hooks.createContainer"),
    StartContainer: hookList(h.startContainer, "hooks.startContainer"),
    Poststart: hookList(h.poststart, "hooks.poststart"),
    Poststop: hookList(h.poststop, "hooks.poststop"),
  };
}

function linuxInit(l: oci.Linux): Init<typeof grpc.LinuxSchema> {
  const idMaps = (maps: oci.IdMapping[] | undefined, at: string): Init<typeof grpc.LinuxIDMappingSchema>[] =>
    (maps ?? []).map((m, i) => ({
      ContainerID: u32(m.containerID, `${at}[${i}].containerID`),
      HostID: u32(m.hostID, `${at}[${i}].hostID`),
      Size: u32(m.size, `${at}[${i}].size`),
    }));
  const sc = l.seccomp;
  return {
    UIDMappings: idMaps(l.uidMappings, "linux.uidMappings"),
    GIDMappings: idMaps(l.gidMappings, "linux.gidMappings"),
    Sysctl: { ...l.sysctl },
    Resources: l.resources && resourcesInit(l.resources, "linux.resources"),
    CgroupsPath: l.cgroupsPath ?? "",
    Namespaces: (l.namespaces ?? []).map((n) => ({ Type: n.type, Path: n.path ?? "" })),
    Devices: (l.devices ?? []).map((d, i) => {
      const at = `linux.devices[${i}]`;
      return {
        Path: d.path,
        Type: d.type,
        Major: i64(d.major ?? 0, `${at}.major`),
        Minor: i64(d.minor ?? 0, `${at}.minor`),
        FileMode: u32(d.fileMode ?? 0, `${at}.fileMode`),
        UID: u32(d.uid ?? 0, `${at}.uid`),
        GID: u32(d.gid ?? 0, `${at}.gid`),
      };
    }),
    Seccomp: sc && {
      DefaultAction: sc.defaultAction,
      Architectures: copy(sc.architectures),
      Syscalls: (sc.syscalls ?? []).map((s, i) => ({
        Names: [...s.names],
        Action: s.action,
        Args: (s.args ?? []).map((a, j) => {
          const at = `linux.seccomp.syscalls[${i}].args[${j}]`;
          return {
            Index: u64(a.index, `${at}.index`),
            Value: u64(a.value, `${at}.value`),
            ValueTwo: u64(a.valueTwo ?? 0, `${at}.valueTwo`),
            Op: a.op,
          };
        }),
      })),
    },
    RootfsPropagation: l.rootfsPropagation ?? "",
    MaskedPaths: copy(l.maskedPaths),
    ReadonlyPaths: copy(l.readonlyPaths),
    MountLabel: l.mountLabel ?? "",
    IntelRdt: l.intelRdt && { L3CacheSchema: l.intelRdt.l3CacheSchema ?? "" },
  };
}

function resourcesInit(r: oci.LinuxResources, at: string): Init<typeof grpc.LinuxResourcesSchema> {
  const { memory: mem, cpu, blockIO: bio, network: net } = r;
  const throttle = (
    ds: oci.LinuxThrottleDevice[] | undefined,
    p: string,
  ): Init<typeof grpc.LinuxThrottleDeviceSchema>[] =>
    (ds ?? []).map((d, i) => ({
      Major: i64(d.major, `${p}[${i}].major`),
      Minor: i64(d.minor, `${p}[${i}].minor`),
      Rate: u64(d.rate, `${p}[${i}].rate`),
    }));
  const bp = `${at}.blockIO`;
  return {
    Devices: (r.devices ?? []).map((d, i) => ({
      Allow: d.allow,
      Type: d.type ?? "",
      // An absent major/minor is the wildcard: -1 on the wire (see the conventions above).
      Major: i64(d.major ?? -1, `${at}.devices[${i}].major`),
      Minor: i64(d.minor ?? -1, `${at}.devices[${i}].minor`),
      Access: d.access ?? "",
    })),
    Memory: mem && {
      Limit: i64(mem.limit ?? 0, `${at}.memory.limit`),
      Reservation: i64(mem.reservation ?? 0, `${at}.memory.reservation`),
      Swap: i64(mem.swap ?? 0, `${at}.memory.swap`),
      Kernel: i64(mem.kernel ?? 0, `${at}.memory.kernel`),
      KernelTCP: i64(mem.kernelTCP ?? 0, `${at}.memory.kernelTCP`),
      Swappiness: u64(mem.swappiness ?? 0, `${at}.memory.swappiness`),
      DisableOOMKiller: mem.disableOOMKiller ?? false,
    },
    CPU: cpu && {
      Shares: u64(cpu.shares ?? 0, `${at}.cpu.shares`),
      Quota: i64(cpu.quota ?? 0, `${at}.cpu.quota`),
      Period: u64(cpu.period ?? 0, `${at}.cpu.period`),
      RealtimeRuntime: i64(cpu.realtimeRuntime ?? 0, `${at}.cpu.realtimeRuntime`),
      RealtimePeriod: u64(cpu.realtimePeriod ?? 0, `${at}.cpu.realtimePeriod`),
      Cpus: cpu.cpus ?? "",
      Mems: cpu.mems ?? "",
    },
    Pids: r.pids && { Limit: i64(r.pids.limit, `${at}.pids.limit`) },
    BlockIO: bio && {
      Weight: u32(bio.weight ?? 0, `${bp}.weight`),
      LeafWeight: u32(bio.leafWeight ?? 0, `${bp}.leafWeight`),
      WeightDevice: (bio.weightDevice ?? []).map((d, i) => ({
        Major: i64(d.major, `${bp}.weightDevice[${i}].major`),
        Minor: i64(d.minor, `${bp}.weightDevice[${i}].minor`),
        Weight: u32(d.weight ?? 0, `${bp}.weightDevice[${i}].weight`),
        LeafWeight: u32(d.leafWeight ?? 0, `${bp}.weightDevice[${i}].leafWeight`),
      })),
      ThrottleReadBpsDevice: throttle(bio.throttleReadBpsDevice, `${bp}.throttleReadBpsDevice`),
      ThrottleWriteBpsDevice: throttle(bio.throttleWriteBpsDevice, `${bp}.throttleWriteBpsDevice`),
      ThrottleReadIOPSDevice: throttle(bio.throttleReadIOPSDevice, `${bp}.throttleReadIOPSDevice`),
      ThrottleWriteIOPSDevice: throttle(bio.throttleWriteIOPSDevice, `${bp}.throttleWriteIOPSDevice`),
    },
    HugepageLimits: (r.hugepageLimits ?? []).map((h, i) => ({
      Pagesize: h.pageSize,
      Limit: u64(h.limit, `${at}.hugepageLimits[${i}].limit`),
    })),
    Network: net && {
      ClassID: u32(net.classID ?? 0, `${at}.network.classID`),
      Priorities: (net.priorities ?? []).map((p, i) => ({
        Name: p.name,
        Priority: u32(p.priority, `${at}.network.priorities[${i}].priority`),
      })),
    },
  };
}

// ---- protobuf -> OCI ----

function processOut(p: grpc.Process, at: string): oci.Process {
  const { User: user, Capabilities: caps, ConsoleSize: box } = p;
  return prune<oci.Process>({
    terminal: flag(p.Terminal),
    consoleSize: box && { height: box.Height, width: box.Width },
    // Required in OCI: an absent User is root, as an empty one would be.
    user: prune<oci.User>({
      uid: user?.UID ?? 0,
      gid: user?.GID ?? 0,
      additionalGids: list(user?.AdditionalGids ?? []),
      username: str(user?.Username ?? ""),
    }),
    args: list(p.Args),
    env: list(p.Env),
    cwd: p.Cwd,
    capabilities:
      caps &&
      prune<oci.LinuxCapabilities>({
        bounding: list(caps.Bounding),
        effective: list(caps.Effective),
        inheritable: list(caps.Inheritable),
        permitted: list(caps.Permitted),
        ambient: list(caps.Ambient),
      }),
    rlimits: each(p.Rlimits, (r, i) => ({
      type: r.Type,
      hard: num(r.Hard, `${at}.rlimits[${i}].hard`),
      soft: num(r.Soft, `${at}.rlimits[${i}].soft`),
    })),
    noNewPrivileges: flag(p.NoNewPrivileges),
    apparmorProfile: str(p.ApparmorProfile),
    oomScoreAdj: nz(p.OOMScoreAdj, `${at}.oomScoreAdj`),
    selinuxLabel: str(p.SelinuxLabel),
  });
}

function hooksOut(hooks: grpc.Hook[], at: string): oci.Hook[] | undefined {
  return each(hooks, (h, i) =>
    prune<oci.Hook>({
      path: h.Path,
      args: list(h.Args),
      env: list(h.Env),
      timeout: nz(h.Timeout, `${at}[${i}].timeout`),
    }),
  );
}

const namespaceTypes: readonly oci.NamespaceType[] = [
  "pid",
  "network",
  "mount",
  "ipc",
  "uts",
  "user",
  "cgroup",
  "time",
];

function linuxOut(l: grpc.Linux): oci.Linux {
  const idMaps = (maps: grpc.LinuxIDMapping[]): oci.IdMapping[] | undefined =>
    each(maps, (m) => ({ containerID: m.ContainerID, hostID: m.HostID, size: m.Size }));
  return prune<oci.Linux>({
    uidMappings: idMaps(l.UIDMappings),
    gidMappings: idMaps(l.GIDMappings),
    sysctl: record(l.Sysctl),
    resources: l.Resources && resourcesOut(l.Resources, "linux.resources"),
    cgroupsPath: str(l.CgroupsPath),
    namespaces: each(l.Namespaces, (n, i) => {
      const type = namespaceTypes.find((t) => t === n.Type);
      if (type === undefined) throw invalid(`linux.namespaces[${i}].type`, `unknown namespace type "${n.Type}"`);
      return prune<oci.LinuxNamespace>({ type, path: str(n.Path) });
    }),
    devices: each(l.Devices, (d, i) => {
      // A fifo ("p") has no device number; for every other type 0 is a real major/minor.
      const isFifo = d.Type === "p";
      return prune<oci.LinuxDevice>({
        path: d.Path,
        type: d.Type,
        major: isFifo && d.Major === 0n ? undefined : num(d.Major, `linux.devices[${i}].major`),
        minor: isFifo && d.Minor === 0n ? undefined : num(d.Minor, `linux.devices[${i}].minor`),
        fileMode: nz32(d.FileMode),
        uid: nz32(d.UID),
        gid: nz32(d.GID),
      });
    }),
    seccomp: l.Seccomp && seccompOut(l.Seccomp, "linux.seccomp"),
    rootfsPropagation: str(l.RootfsPropagation),
    maskedPaths: list(l.MaskedPaths),
    readonlyPaths: list(l.ReadonlyPaths),
    mountLabel: str(l.MountLabel),
    intelRdt: l.IntelRdt?.L3CacheSchema ? { l3CacheSchema: l.IntelRdt.L3CacheSchema } : undefined,
  });
}

function seccompOut(sc: grpc.LinuxSeccomp, at: string): oci.LinuxSeccomp {
  return prune<oci.LinuxSeccomp>({
    defaultAction: sc.DefaultAction,
    architectures: list(sc.Architectures),
    syscalls: each(sc.Syscalls, (s, i) =>
      prune<oci.LinuxSyscall>({
        names: [...s.Names],
        action: s.Action,
        args: each(s.Args, (a, j) => {
          const ap = `${at}.syscalls[${i}].args[${j}]`;
          return prune<oci.LinuxSeccompArg>({
            index: num(a.Index, `${ap}.index`),
            value: num(a.Value, `${ap}.value`),
            valueTwo: nz(a.ValueTwo, `${ap}.valueTwo`),
            op: a.Op,
          });
        }),
      }),
    ),
  });
}

function resourcesOut(r: grpc.LinuxResources, at: string): oci.LinuxResources {
  const { Memory: mem, CPU: cpu, BlockIO: bio, Network: net } = r;
  const bp = `${at}.blockIO`;
  const throttle = (ds: grpc.LinuxThrottleDevice[], p: string): oci.LinuxThrottleDevice[] | undefined =>
    each(ds, (d, i) => ({
      major: num(d.Major, `${p}[${i}].major`),
      minor: num(d.Minor, `${p}[${i}].minor`),
      rate: num(d.Rate, `${p}[${i}].rate`),
    }));
  return prune<oci.LinuxResources>({
    devices: each(r.Devices, (d, i) =>
      prune<oci.LinuxDeviceCgroup>({
        allow: d.Allow,
        type: str(d.Type),
        major: d.Major === -1n ? undefined : num(d.Major, `${at}.devices[${i}].major`),
        minor: d.Minor === -1n ? undefined : num(d.Minor, `${at}.devices[${i}].minor`),
        access: str(d.Access),
      }),
    ),
    memory:
      mem &&
      group<oci.LinuxMemory>({
        limit: nz(mem.Limit, `${at}.memory.limit`),
        reservation: nz(mem.Reservation, `${at}.memory.reservation`),
        swap: nz(mem.Swap, `${at}.memory.swap`),
        kernel: nz(mem.Kernel, `${at}.memory.kernel`),
        kernelTCP: nz(mem.KernelTCP, `${at}.memory.kernelTCP`),
        swappiness: nz(mem.Swappiness, `${at}.memory.swappiness`),
        disableOOMKiller: flag(mem.DisableOOMKiller),
      }),
    cpu:
      cpu &&
      group<oci.LinuxCpu>({
        shares: nz(cpu.Shares, `${at}.cpu.shares`),
        quota: nz(cpu.Quota, `${at}.cpu.quota`),
        period: nz(cpu.Period, `${at}.cpu.period`),
        realtimeRuntime: nz(cpu.RealtimeRuntime, `${at}.cpu.realtimeRuntime`),
        realtimePeriod: nz(cpu.RealtimePeriod, `${at}.cpu.realtimePeriod`),
        cpus: str(cpu.Cpus),
        mems: str(cpu.Mems),
      }),
    // `limit` is required inside `pids`, so an unset limit drops the whole group.
    pids: r.Pids && r.Pids.Limit !== 0n ? { limit: num(r.Pids.Limit, `${at}.pids.limit`) } : undefined,
    blockIO:
      bio &&
      group<oci.LinuxBlockIo>({
        weight: nz32(bio.Weight),
        leafWeight: nz32(bio.LeafWeight),
        weightDevice: each(bio.WeightDevice, (d, i) =>
          prune<oci.LinuxWeightDevice>({
            major: num(d.Major, `${bp}.weightDevice[${i}].major`),
            minor: num(d.Minor, `${bp}.weightDevice[${i}].minor`),
            weight: nz32(d.Weight),
            leafWeight: nz32(d.LeafWeight),
          }),
        ),
        throttleReadBpsDevice: throttle(bio.ThrottleReadBpsDevice, `${bp}.throttleReadBpsDevice`),
        throttleWriteBpsDevice: throttle(bio.ThrottleWriteBpsDevice, `${bp}.throttleWriteBpsDevice`),
        throttleReadIOPSDevice: throttle(bio.ThrottleReadIOPSDevice, `${bp}.throttleReadIOPSDevice`),
        throttleWriteIOPSDevice: throttle(bio.ThrottleWriteIOPSDevice, `${bp}.throttleWriteIOPSDevice`),
      }),
    hugepageLimits: each(r.HugepageLimits, (h, i) => ({
      pageSize: h.Pagesize,
      limit: num(h.Limit, `${at}.hugepageLimits[${i}].limit`),
    })),
    network:
      net &&
      group<oci.LinuxNetwork>({
        classID: nz32(net.ClassID),
        priorities: each(net.Priorities, (p) => ({ name: p.Name, priority: p.Priority })),
      }),
  });
}

// ---- helpers ----

function invalid(path: string, what: string): KataError {
  return new KataError(Code.InvalidArgument, `oci spec ${path}: ${what}`, { details: { path } });
}

function i64(v: number, path: string): bigint {
  if (!Number.isSafeInteger(v)) throw invalid(path, `${v} is not an integer in the safe range ±(2^53-1)`);
  return BigInt(v);
}

function u64(v: number, path: string): bigint {
  if (v < 0) throw invalid(path, `${v} is negative`);
  return i64(v, path);
}

function u32(v: number, path: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw invalid(path, `${v} is not a uint32`);
  return v;
}

function num(v: bigint, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw invalid(path, `${v} is outside the safe integer range ±(2^53-1)`);
  }
  return Number(v);
}

// Guest-side field readers: proto3's zero/empty value becomes an absent OCI field.
const nz = (v: bigint, path: string): number | undefined => (v === 0n ? undefined : num(v, path));
const nz32 = (v: number): number | undefined => (v === 0 ? undefined : v);
const flag = (v: boolean): true | undefined => (v ? true : undefined);
const str = (v: string): string | undefined => (v === "" ? undefined : v);
// Arrays and maps are copied both ways, so a converted value never aliases its input.
const list = <T>(v: readonly T[]): T[] | undefined => (v.length === 0 ? undefined : [...v]);
const each = <A, B>(v: readonly A[], f: (x: A, i: number) => B): B[] | undefined =>
  v.length === 0 ? undefined : v.map(f);
const record = (v: Readonly<Record<string, string>>): Record<string, string> | undefined =>
  Object.keys(v).length === 0 ? undefined : { ...v };
const copy = <T>(v: readonly T[] | undefined): T[] => (v === undefined ? [] : [...v]);

/** `prune`, and absent when nothing is left: for the resource groups, where `{}` only adds noise. */
function group<T extends object>(v: Loose<T>): T | undefined {
  const out = prune<T>(v);
  return Object.keys(out).length === 0 ? undefined : out;
}

type OptionalKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? K : never }[keyof T];
/** T, except that its optional keys may also hold undefined (which `prune` then removes). */
type Loose<T> = { [K in keyof T]: K extends OptionalKeys<T> ? T[K] | undefined : T[K] };

/** Drops undefined-valued keys: under exactOptionalPropertyTypes an optional field is absent, never undefined. */
function prune<T extends object>(v: Loose<T>): T {
  // CAST: only keys whose value is undefined were removed, and Loose<T> allows undefined only on T's
  // optional keys, so what remains is a T.
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) as T;
}
