// The command line of native/kata-ts-exec, through which every child of the host side starts: it closes
// every descriptor the child was not given before it execs the program (the CVE-2024-21626 class: a
// descriptor our caller left open without close-on-exec must reach neither the sandbox service, nor
// QEMU, nor any helper). Node cannot do it itself: it opens its own descriptors close-on-exec, but it can
// neither mark nor close the ones it inherited. Pure: platform/process.ts runs what this plans.

import type { StdioOptions } from "node:child_process";
import { Code, KataError } from "../base/errors.js";

/** Where `npm run build` puts the launcher, relative to the install root. */
export const launcherRelPath = "dist/native/kata-ts-exec";

type StdioEntry = Exclude<StdioOptions, string>[number];

export interface LaunchPlan {
  /** The launcher's arguments, ending in `-- file args...`. */
  readonly args: string[];
  /** The caller's stdio up to the last descriptor it gives, then the launcher's status pipe. */
  readonly stdio: StdioEntry[];
  /** Index of the status pipe in `stdio`: EOF alone means the program was exec'd. */
  readonly statusIndex: number;
}

/** libuv leaves a descriptor >= 3 it is not given as it was inherited: such a slot gives the child nothing. */
function gives(entry: StdioEntry): boolean {
  return entry !== "ignore" && entry !== null && entry !== undefined;
}

/**
 * How many descriptors after 0-2 the child is given by `stdio` (Node's spawn option). The launcher keeps
 * a range (3 .. 3+N-1), so a slot left empty below a given one would keep whatever this process
 * inherited there: that is refused (INTERNAL, a caller's bug).
 */
export function keptExtraFds(stdio: StdioOptions): number {
  if (typeof stdio === "string") return 0;
  let last = -1;
  stdio.forEach((entry, i) => {
    if (i >= 3 && gives(entry)) last = i;
  });
  for (let i = 3; i < last; i++) {
    if (!gives(stdio[i])) {
      throw new KataError(
        Code.Internal,
        `stdio[${i}] is empty but stdio[${last}] is given: a child gets descriptors 3.. without gaps`,
      );
    }
  }
  return last < 0 ? 0 : last - 2;
}

/** The launcher's plan for running `file args` with `stdio` (default: Node's pipes) and `argv0`. */
export function planLaunch(
  file: string,
  args: readonly string[],
  opts: { readonly stdio: StdioOptions; readonly argv0?: string },
): LaunchPlan {
  const keep = keptExtraFds(opts.stdio);
  const given: StdioEntry[] = typeof opts.stdio === "string" ? [opts.stdio, opts.stdio, opts.stdio] : [...opts.stdio];
  // Slots 0-2 are always set up by Node (undefined there means "pipe"); padding keeps that meaning.
  const stdio = [...given.slice(0, 3 + keep)];
  while (stdio.length < 3) stdio.push(undefined);
  const statusIndex = stdio.push("pipe") - 1;
  return {
    args: [
      "--keep",
      String(keep),
      "--status-fd",
      String(statusIndex),
      ...(opts.argv0 === undefined ? [] : ["--argv0", opts.argv0]),
      "--",
      file,
      ...args,
    ],
    stdio,
    statusIndex,
  };
}

/** What the launcher reported on its status pipe: the step that failed and its errno name. */
export interface LaunchFailure {
  readonly step: "close" | "exec";
  /** ENOENT, EACCES... */
  readonly errno: string;
  readonly message: string;
}

/** Undefined for an empty report (the program runs); the failure otherwise. */
export function parseLaunchReport(report: string): LaunchFailure | undefined {
  if (report === "") return undefined;
  const m = /^(close|exec) (E[A-Z0-9]+) (.*)$/.exec(report.trim());
  if (m === null) return { step: "exec", errno: "EUNKNOWN", message: report.trim().slice(0, 200) };
  // CAST: the expression's alternatives are exactly the step names, and every group matched.
  return { step: m[1] as LaunchFailure["step"], errno: m[2] as string, message: m[3] as string };
}
