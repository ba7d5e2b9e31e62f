// `linux` of the OCI <-> grpc.Spec mapping, except `linux.resources` (resources.ts). Conventions: convert.ts.

import type * as oci from "../../oci/spec.js";
import type * as grpc from "../gen/oci_pb.js";
import {
  copy,
  each,
  i64,
  invalid,
  list,
  num,
  nz,
  nz32,
  prune,
  record,
  str,
  u32,
  u64,
  wireMap,
  type Init,
} from "./fields.js";
import { resourcesInit, resourcesOut } from "./resources.js";

// ---- OCI -> protobuf ----

export function linuxInit(l: oci.Linux): Init<typeof grpc.LinuxSchema> {
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
    Sysctl: wireMap(l.sysctl, "linux.sysctl"),
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

// ---- protobuf -> OCI ----

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

export function linuxOut(l: grpc.Linux): oci.Linux {
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
