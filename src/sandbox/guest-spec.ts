// The spec a container gets inside the guest is not the host's config.json: host paths, host
// namespaces, hooks (they run on the host) and host security labels mean nothing in the VM.

import { Code, KataError } from "../base/errors.js";
import type { Mount, Spec } from "../oci/spec.js";
import { guestRootfsPath } from "../protocol/guest-paths.js";

/** Mount types the guest provides itself; anything else must come through storage planning. */
const guestProvidedTypes = new Set(["proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2"]);

export interface GuestSpecInput {
  readonly containerId: string;
  readonly spec: Spec;
  /** Mounts already rewritten to guest paths (storage planning); others are taken from the spec. */
  readonly mounts?: readonly Mount[];
  /**
   * [runtime] disable_guest_seccomp: the profile is left out. The VM is the boundary that protects the
   * host; a profile in the guest guards only the guest kernel the pod's containers share, and loading
   * Kubernetes' RuntimeDefault one costs crun 0.1–0.25 s per container under TCG.
   */
  readonly dropSeccomp?: boolean;
}

export function guestSpec({ containerId, spec, mounts, dropSeccomp }: GuestSpecInput): Spec {
  const out: Spec = structuredClone(spec);
  out.root = { path: guestRootfsPath(containerId), readonly: spec.root?.readonly === true };
  delete out.hooks;
  if (mounts !== undefined) {
    out.mounts = mounts.map((m) => ({ ...m }));
  } else {
    const unsupported = (spec.mounts ?? []).filter((m) => !guestProvidedTypes.has(m.type ?? "bind"));
    if (unsupported.length > 0) {
      throw new KataError(
        Code.Unimplemented,
        `container ${containerId}: mounts of type ${unsupported.map((m) => `${m.type ?? "bind"} at ${m.destination}`).join(", ")} need storage planning`,
      );
    }
  }
  if (out.process !== undefined) {
    delete out.process.apparmorProfile;
    delete out.process.selinuxLabel;
  }
  if (out.linux !== undefined) {
    // The pod's network is the VM's: containers share the guest's network namespace.
    out.linux.namespaces = (out.linux.namespaces ?? [])
      .filter((n) => n.type !== "network")
      .map((n) => ({ type: n.type }));
    // crun applies a net.* sysctl only in a network namespace of the container's own, which it no
    // longer has (podman asks for net.ipv4.ping_group_range even with --network none): such a sysctl
    // would be the whole VM's, shared by the pod, so it is left out rather than failing the container.
    if (out.linux.sysctl !== undefined) {
      out.linux.sysctl = Object.fromEntries(Object.entries(out.linux.sysctl).filter(([k]) => !k.startsWith("net.")));
    }
    if (dropSeccomp === true) delete out.linux.seccomp;
    delete out.linux.devices;
    delete out.linux.mountLabel;
    out.linux.cgroupsPath = `/kata-ts/${containerId}`;
  }
  return out;
}
