// runc's --preserve-fds N passes the caller's descriptors 3..3+N-1 to the container process. A kata-ts
// container runs in a VM, where no host descriptor can follow it, so only 0 is accepted (podman and
// conmon pass --preserve-fds 0 as a matter of course).

import { Code, KataError } from "../base/errors.js";

export const preserveFdsOption = [
  "--preserve-fds <n>",
  "pass N extra descriptors (only 0: a VM cannot hold host fds)",
] as const;

/** Throws INVALID_ARGUMENT unless `value` (the flag's text, or undefined when absent) is 0. */
export function checkPreserveFds(value: string | undefined): void {
  if (value === undefined) return;
  if (!/^[0-9]{1,9}$/.test(value)) {
    throw new KataError(
      Code.InvalidArgument,
      `--preserve-fds ${JSON.stringify(value.slice(0, 40))}: expected a number of descriptors`,
    );
  }
  if (Number(value) > 0) {
    throw new KataError(
      Code.InvalidArgument,
      `--preserve-fds ${Number(value)}: kata-ts cannot pass host file descriptors into the container's VM; only 0 is supported`,
    );
  }
}
