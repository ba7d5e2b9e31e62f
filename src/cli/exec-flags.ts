// runc's exec flags beyond the basics (-e, --cwd, -u, -t, -p, -d): what each does to the process spec,
// or why it is refused. Pure, so every flag is tested alone; exec.ts declares them and applies this.

import { Code, KataError } from "../base/errors.js";
import type { Process } from "../oci/spec.js";

export interface RuncExecFlags {
  readonly additionalGids: string[];
  readonly cap: string[];
  readonly noNewPrivs?: boolean;
  readonly apparmor?: string;
  readonly processLabel?: string;
  readonly cgroup?: string;
  readonly ignorePaused?: boolean;
}

/** commander's collector for repeatable flags. */
export const collect = (v: string, acc: string[]): string[] => [...acc, v];

export const runcExecHelp: Readonly<Record<keyof RuncExecFlags, string>> = {
  additionalGids: "an additional group id (repeatable)",
  cap: "add a capability (CAP_NET_ADMIN) to the bounding, effective and permitted sets (repeatable)",
  noNewPrivs: "set no_new_privileges for the process",
  apparmor: "accepted for runc's callers: a host AppArmor profile is dropped (the process runs in a VM)",
  processLabel: "accepted for runc's callers: a host SELinux label is dropped (the process runs in a VM)",
  cgroup: "not supported: run the process in a sub-cgroup",
  ignorePaused: "not supported: exec in a paused container",
};

/** Refuses what kata-ts cannot do; the first refused flag is named. */
export function checkRuncExecFlags(flags: RuncExecFlags): void {
  if (flags.cgroup !== undefined) {
    throw new KataError(
      Code.InvalidArgument,
      `--cgroup ${JSON.stringify(flags.cgroup)}: not supported (the container's cgroups are in its VM, made by the guest's crun)`,
    );
  }
  if (flags.ignorePaused === true) {
    throw new KataError(Code.InvalidArgument, "--ignore-paused: not supported; resume the container first");
  }
}

/** Applies runc's extra exec flags to `p` (a copy of the container's process, or --process FILE's). */
export function applyRuncExecFlags(p: Process, flags: RuncExecFlags): Process {
  checkRuncExecFlags(flags);
  const out: Process = { ...p, user: { ...p.user } };
  if (flags.additionalGids.length > 0) {
    const gids = flags.additionalGids.map((g) => {
      if (!/^\d{1,10}$/.test(g) || Number(g) > 0xffffffff) {
        throw new KataError(Code.InvalidArgument, `--additional-gids ${JSON.stringify(g)}: expected a group id`);
      }
      return Number(g);
    });
    out.user.additionalGids = [...(p.user.additionalGids ?? []), ...gids];
  }
  if (flags.cap.length > 0) {
    for (const c of flags.cap) {
      if (!/^CAP_[A-Z_]{1,40}$/.test(c)) {
        throw new KataError(
          Code.InvalidArgument,
          `--cap ${JSON.stringify(c)}: expected a capability name such as CAP_NET_ADMIN`,
        );
      }
    }
    const add = (set: string[] | undefined): string[] => [...new Set([...(set ?? []), ...flags.cap])];
    const caps = p.capabilities ?? {};
    // runc's sets: ambient needs inheritable, which runc's --cap leaves alone.
    out.capabilities = {
      ...caps,
      bounding: add(caps.bounding),
      effective: add(caps.effective),
      permitted: add(caps.permitted),
    };
  }
  if (flags.noNewPrivs === true) out.noNewPrivileges = true;
  // --apparmor and --process-label: host labels, dropped as create drops the container's (guest-spec.ts).
  return out;
}
