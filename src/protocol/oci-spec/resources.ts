// `linux.resources` of the OCI <-> grpc.Spec mapping (conventions: convert.ts). For limits, quotas, shares,
// periods and weights 0 means "unset" in both directions; device rules carry the -1 wildcard.

import type * as oci from "../../oci/spec.js";
import type * as grpc from "../gen/oci_pb.js";
import { each, flag, group, i64, num, nz, nz32, prune, str, u32, u64, type Init } from "./fields.js";

// ---- OCI -> protobuf ----

export function resourcesInit(r: oci.LinuxResources, at: string): Init<typeof grpc.LinuxResourcesSchema> {
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
      // An absent major/minor is the wildcard: -1 on the wire (see the conventions in convert.ts).
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

export function resourcesOut(r: grpc.LinuxResources, at: string): oci.LinuxResources {
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
