// What the VM cache's messages carry (proto/cache.proto, Kata's cache.CacheService), and where its files
// live. Pure: encoding, bounded parsing of what a server says, and the matching rule.
//
// GrpcVMConfig.Data is the cached VMs' record (the template's record shape: what they booted, so a
// sandbox can tell whether one fits it), GrpcVM.hypervisor where the handed-out VM's pieces are. Both
// are read by the sandbox service from a socket only root can reach, but they name paths it will
// rename and sockets it will connect to: every path must lie in the cache's own directory.

import { Buffer } from "node:buffer";
import path from "node:path";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, KataError } from "../base/errors.js";
import { checkId } from "../base/ids.js";
import { GrpcVMSchema, type GrpcVM } from "../protocol/gen/cache_pb.js";
import { parseTemplateRecord, templateMismatches, type TemplateRecord, type TemplateRequest } from "./template-plan.js";

/** A message larger than this is not the cache's (a record is ~2 KB). */
export const maxCacheMessageBytes = 64 * 1024;

/** The cache server's directory for `endpoint`: its VMs' sockets and shares (same file system as /run). */
export function cacheDirOf(endpoint: string): string {
  return `${endpoint}.d`;
}

export interface CacheVmPaths {
  /** QEMU's sockets, console log and stderr; the adopter renames it to the sandbox's VM directory. */
  readonly vmDir: string;
  /** The VM's share (mounts/ and its read-only view shared/, the 9p export); renamed to the sandbox's. */
  readonly shareRoot: string;
  /** Where the VM's guard takes a new owner (native/kata-ts-vmguard). */
  readonly controlSocket: string;
}

export function cacheVmPaths(cacheDir: string, vmId: string): CacheVmPaths {
  checkId("cached VM id", vmId);
  const vmDir = path.join(cacheDir, "vm", vmId);
  return { vmDir, shareRoot: path.join(cacheDir, "share", vmId), controlSocket: path.join(vmDir, "guard.sock") };
}

/** GrpcVM.hypervisor: which VM, and its QEMU's pid (for status and the sandbox's state). */
export interface CachedVmInfo {
  readonly id: string;
  readonly pid: number;
  readonly vcpus: number;
  readonly memoryMiB: number;
}

export function encodeCachedVm(info: CachedVmInfo): GrpcVM {
  return create(GrpcVMSchema, {
    id: info.id,
    hypervisor: Buffer.from(JSON.stringify({ pid: info.pid })),
    cpu: info.vcpus,
    memory: info.memoryMiB,
  });
}

/** A GrpcVM from the server, checked: its id names a directory we will rename, so it must be an id. */
export function parseCachedVm(vm: GrpcVM, cacheDir: string): CachedVmInfo & CacheVmPaths {
  if (vm.hypervisor.length > maxCacheMessageBytes) {
    throw new KataError(Code.FailedPrecondition, "vm cache: GrpcVM.hypervisor is too large");
  }
  let h: unknown;
  try {
    h = JSON.parse(Buffer.from(vm.hypervisor).toString("utf8"));
  } catch (e) {
    throw new KataError(Code.FailedPrecondition, "vm cache: GrpcVM.hypervisor is not JSON", { cause: e });
  }
  const pid = (h as { pid?: unknown } | null)?.pid;
  if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 1) {
    throw new KataError(Code.FailedPrecondition, "vm cache: GrpcVM.hypervisor.pid is missing or not a pid");
  }
  if (!/^cache-[0-9]{1,9}$/.test(vm.id)) {
    throw new KataError(
      Code.FailedPrecondition,
      `vm cache: GrpcVM.id ${JSON.stringify(vm.id.slice(0, 64))} is not ours`,
    );
  }
  return { id: vm.id, pid, vcpus: vm.cpu, memoryMiB: vm.memory, ...cacheVmPaths(cacheDir, vm.id) };
}

/** GrpcVMConfig.Data: the cached VMs' record. */
export function encodeCacheRecord(rec: TemplateRecord): Uint8Array {
  return Buffer.from(JSON.stringify(rec));
}

export function parseCacheRecord(data: Uint8Array): TemplateRecord {
  if (data.length > maxCacheMessageBytes) {
    throw new KataError(Code.FailedPrecondition, "vm cache: GrpcVMConfig.Data is too large");
  }
  return parseTemplateRecord(Buffer.from(data).toString("utf8"));
}

/**
 * Why a sandbox asking for `req` cannot take one of the cached VMs described by `rec` (empty: it can).
 * The template's rule (template-plan.ts): a cached VM cannot be resized or given another NIC (microvm
 * has no hotplug), so everything the guest sees must be the same; its one NIC serves a pod with one
 * interface or none (cache-net-plan.ts).
 */
export function cacheMismatches(rec: TemplateRecord, req: TemplateRequest): string[] {
  return templateMismatches(rec, req).map((m) =>
    m
      .replace(": template ", ": cached VM ")
      .replace("the template has", "the cached VM has")
      .replace("a clone cannot get more", "a cached VM cannot get more"),
  );
}

/** grpc-js serializers over protobuf-es, bounded. */
export function protoCodec<D extends DescMessage>(
  schema: D,
): { serialize: (m: MessageShape<D>) => Buffer; deserialize: (b: Buffer) => MessageShape<D> } {
  return {
    serialize: (m) => Buffer.from(toBinary(schema, m)),
    deserialize: (b) => {
      if (b.length > maxCacheMessageBytes) {
        throw new KataError(
          Code.FailedPrecondition,
          `vm cache: ${schema.typeName} larger than ${maxCacheMessageBytes} bytes`,
        );
      }
      return fromBinary(schema, b);
    },
  };
}
