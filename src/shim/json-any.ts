// The JSON payloads the OCI CLI and the service exchange in protobuf Any fields, and the request
// metadata keys they share. Apart from task-service.ts so that CLI verbs load only this, not the pod.

import { create } from "@bufbuild/protobuf";
import { AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import { Code, KataError } from "../base/errors.js";

/** Type URLs of the JSON payloads we put in Any fields (containerd uses bare names; these are ours). */
export const anyTypes = {
  process: "types.containerd.io/opencontainers/runtime-spec/1/Process",
  resources: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
  stats: "kata-ts/cgroup-stats+json",
  psRow: "kata-ts/ps-row+json",
} as const;

/**
 * Request metadata the OCI CLI sets on Delete for `delete --force` (containerd never sends it): kill what
 * runs and remove it, whatever the guest answers.
 */
export const forceDeleteKey = "kata-ts-force";

/**
 * Request metadata the OCI CLI sets on Stats and Pids (value "kata-ts"): answer with kata-ts's own
 * payloads (the agent's stats as JSON, ps rows) rather than containerd's (cgroups v1 Metrics, bare
 * pids), which `kata-ts events` and `kata-ts ps` print as they always have.
 */
export const formatKey = "kata-ts-format";

/** Largest JSON payload accepted in an Any (a process spec, resources). */
const maxAnyJsonBytes = 1 << 20;

export function jsonAny(typeUrl: string, value: unknown): Any {
  return create(AnySchema, { typeUrl, value: Buffer.from(JSON.stringify(value)) });
}

/** The JSON inside an Any, checked for its type and size. */
export function fromJsonAny(a: Any | undefined, typeUrl: string, what: string): unknown {
  if (a === undefined) throw new KataError(Code.InvalidArgument, `${what}: missing`);
  const name = typeUrl.split("/").pop() ?? typeUrl;
  if (a.typeUrl !== typeUrl && !a.typeUrl.endsWith(`/${name}`)) {
    throw new KataError(Code.InvalidArgument, `${what}: type ${JSON.stringify(a.typeUrl)}, expected ${typeUrl}`);
  }
  if (a.value.length > maxAnyJsonBytes) {
    throw new KataError(Code.InvalidArgument, `${what}: ${a.value.length} bytes, more than ${maxAnyJsonBytes}`);
  }
  try {
    return JSON.parse(Buffer.from(a.value).toString("utf8"));
  } catch (e) {
    throw new KataError(Code.InvalidArgument, `${what}: not valid JSON`, { cause: e });
  }
}
