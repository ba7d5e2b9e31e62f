// runc's create/run flags that mean nothing for a container in a VM, accepted so that callers passing
// them (podman, conmon, CRI-O) work, and the one kata-ts cannot honour. Each help text says which.

import { Code, KataError } from "../base/errors.js";

/** runc's: no pivot_root (a rootfs on a ramdisk). The guest's crun sets the container's root up. */
export const noPivotOption = ["--no-pivot", "accepted for runc's callers: the guest's crun sets up the root"] as const;

/** runc's: keep the caller's session keyring. The container's keyrings are the guest kernel's. */
export const noNewKeyringOption = [
  "--no-new-keyring",
  "accepted for runc's callers: keyrings are the guest kernel's, never the host's",
] as const;

/** runc's: no subreaper for `run`. kata-ts reaps nothing on the host: the processes are in the VM. */
export const noSubreaperOption = [
  "--no-subreaper",
  "accepted for runc's callers: the container's processes are in the VM",
] as const;

export const keepOption = ["--keep", "with -d only: the container is kept until `delete` anyway"] as const;

/**
 * runc's `run --keep` leaves the stopped container for `delete`. kata-ts's foreground run hosts the
 * sandbox's service in its own process, which ends with it: nothing can be kept. `run -d` keeps it anyway.
 */
export function checkKeep(keep: boolean, detach: boolean): void {
  if (keep && !detach) {
    throw new KataError(
      Code.InvalidArgument,
      "--keep: a foreground run hosts the sandbox in its own process, which ends with it; use create and start (or run -d) to keep the container",
    );
  }
}
