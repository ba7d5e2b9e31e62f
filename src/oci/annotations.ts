// Which sandbox a container belongs to, from the annotations that CRI implementations put in the OCI
// spec: containerd's CRI plugin, CRI-O and dockershim each use their own keys. No key means a
// single-container sandbox (a plain `kata-ts run`/`create` of one bundle).

import { Code, KataError } from "../base/errors.js";
import { checkId } from "../base/ids.js";
import type { Spec } from "./spec.js";

export type ContainerType = "sandbox" | "container";

interface AnnotationScheme {
  readonly name: string;
  readonly typeKey: string;
  readonly sandboxIdKey: string;
  readonly values: Readonly<Record<string, ContainerType>>;
}

/** Keys and values as each CRI implementation writes them. */
export const annotationSchemes: readonly AnnotationScheme[] = [
  {
    name: "containerd CRI",
    typeKey: "io.kubernetes.cri.container-type",
    sandboxIdKey: "io.kubernetes.cri.sandbox-id",
    values: { sandbox: "sandbox", container: "container" },
  },
  {
    name: "CRI-O",
    typeKey: "io.kubernetes.cri-o.ContainerType",
    sandboxIdKey: "io.kubernetes.cri-o.SandboxID",
    values: { sandbox: "sandbox", container: "container" },
  },
  {
    name: "dockershim",
    typeKey: "io.kubernetes.docker.type",
    sandboxIdKey: "io.kubernetes.sandbox.id",
    values: { podsandbox: "sandbox", container: "container" },
  },
];

export interface ContainerRole {
  readonly type: ContainerType;
  /** The sandbox the container belongs to; its own id for a sandbox. */
  readonly sandboxId: string;
  /** Which scheme said so ("none" for a single-container sandbox). */
  readonly scheme: string;
}

/**
 * The container's role. Throws INVALID_ARGUMENT for an unknown type value (naming the value and the
 * key) and for a pod container without a sandbox id.
 */
export function containerRole(spec: Spec, containerId: string): ContainerRole {
  const annotations = spec.annotations ?? {};
  for (const scheme of annotationSchemes) {
    const raw = annotations[scheme.typeKey];
    if (raw === undefined) continue;
    const type = Object.hasOwn(scheme.values, raw) ? scheme.values[raw] : undefined;
    if (type === undefined) {
      throw new KataError(
        Code.InvalidArgument,
        `unknown container type ${JSON.stringify(raw)} in annotation ${scheme.typeKey} (expected ${Object.keys(scheme.values).join(" or ")})`,
      );
    }
    if (type === "sandbox") {
      const declared = annotations[scheme.sandboxIdKey];
      return {
        type,
        sandboxId: declared === undefined || declared === "" ? containerId : checkId("sandbox id", declared),
        scheme: scheme.name,
      };
    }
    const sandboxId = annotations[scheme.sandboxIdKey];
    if (sandboxId === undefined || sandboxId === "") {
      throw new KataError(
        Code.InvalidArgument,
        `container ${containerId} is a pod container (${scheme.typeKey}=${raw}) but has no sandbox id (${scheme.sandboxIdKey})`,
      );
    }
    return { type, sandboxId: checkId("sandbox id", sandboxId), scheme: scheme.name };
  }
  return { type: "sandbox", sandboxId: containerId, scheme: "none" };
}
