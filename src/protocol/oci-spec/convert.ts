// OCI runtime-spec config.json <-> Kata's protobuf grpc.Spec (proto/oci.proto). The host converts before
// CreateContainer/ExecProcess; the guest converts back and writes the result as config.json for crun.
// This file is the entry point and holds the top level; each section has its own file (process, hooks,
// linux, resources), with the range checks and zero-value readers in fields.ts.
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
 * - A map key `__proto__` (annotations, sysctl) is refused with INVALID_ARGUMENT: protobuf-es would drop it
 *   while decoding on the guest side.
 * - OCI fields the proto lacks are dropped by `ociToGrpcSpec`; `unmappedOciFields` names the ones set.
 */

import { create } from "@bufbuild/protobuf";
import type * as oci from "../../oci/spec.js";
import * as grpc from "../gen/oci_pb.js";
import { copy, each, flag, list, prune, record, str, wireMap } from "./fields.js";
import { hooksInit, hooksOut } from "./hooks.js";
import { linuxInit, linuxOut } from "./linux.js";
import { processInit, processOut } from "./process.js";

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
    Annotations: wireMap(spec.annotations, "annotations"),
    Linux: spec.linux && linuxInit(spec.linux),
  });
}

/** Guest side: a valid runtime-spec for crun. Throws KataError(INVALID_ARGUMENT) naming the JSON path. */
export function grpcToOciSpec(spec: grpc.Spec): oci.Spec {
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
    hooks: spec.Hooks && hooksOut(spec.Hooks),
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
