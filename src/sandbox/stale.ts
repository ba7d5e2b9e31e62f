// Cleaning up after a sandbox whose service died or stopped answering (SIGKILL, OOM, a wedge, a host
// crash): `delete --force` finds what the state directory says was created and removes it. Processes
// are identified before they are killed (the service by its command line, QEMU by its executable and
// its VM directory), so a recycled pid is never shot.

import { readFile, readlink, rm } from "node:fs/promises";
import path from "node:path";
import { delay } from "../base/async.js";
import { Code, KataError, describeError, errnoOf, ignoreErrno } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import type { NetnsPort } from "../network/netns.js";
import type { PodNetworkPort } from "./pod-network.js";
import type { CgroupFs } from "../platform/cgroups.js";
import type { Mounter } from "../platform/mount.js";
import { sharedDirPaths, teardownShare } from "../storage/shared-dir.js";
import { vmDirOf, type StateStore } from "./persist.js";
import { removeStaleCgroup } from "./pod-cgroup.js";

/** What stale cleanup needs to know of, and do to, host processes. */
export interface ProcessTable {
  /** The NUL-separated command line, or undefined when the process is gone. */
  cmdline(pid: number): Promise<string[] | undefined>;
  /** The executable's path (/proc/<pid>/exe), or undefined when gone or unreadable. */
  exe(pid: number): Promise<string | undefined>;
  /** SIGKILL; a process already gone is not an error. */
  kill(pid: number): void;
}

export interface StaleDeps {
  readonly store: StateStore;
  readonly mounter: Mounter;
  readonly readMountInfo: () => Promise<string>;
  readonly netns: NetnsPort;
  readonly network: PodNetworkPort;
  readonly logger: Logger;
  readonly processes: ProcessTable;
  /** Removes the sandbox's host cgroup its state names (absent: left alone). */
  readonly cgroups?: CgroupFs;
}

/** How long a killed process may take to disappear before cleanup goes on anyway. */
const killWaitMs = 3000;

export const procTable: ProcessTable = {
  async cmdline(pid) {
    const text = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(ignoreErrno("ENOENT", "ESRCH"));
    return text === undefined ? undefined : text.split("\0").filter((a) => a !== "");
  },
  async exe(pid) {
    return readlink(`/proc/${pid}/exe`).catch(ignoreErrno("ENOENT", "ESRCH", "EACCES"));
  },
  kill(pid) {
    try {
      process.kill(pid, "SIGKILL");
    } catch (e) {
      // ESRCH: it is already gone, which is what we wanted.
      if (errnoOf(e) !== "ESRCH") throw e;
    }
  },
};

/** The per-sandbox service of `sandboxId` under `root` (shim-main serve --root R --id S). */
function isService(argv: readonly string[], root: string, sandboxId: string): boolean {
  const at = (flag: string): string | undefined => argv[argv.indexOf(flag) + 1];
  return argv.includes("serve") && at("--id") === sandboxId && at("--root") === root;
}

/** QEMU started for this sandbox: its executable is qemu-system-*, and its arguments name the VM dir. */
function isVm(exe: string | undefined, argv: readonly string[], vmDir: string): boolean {
  if (exe === undefined || !path.basename(exe).startsWith("qemu-system")) return false;
  return argv.some((a) => a.includes(vmDir + path.sep));
}

async function killAndWait(t: ProcessTable, pid: number): Promise<void> {
  t.kill(pid);
  for (let waited = 0; waited < killWaitMs; waited += 50) {
    if ((await t.cmdline(pid)) === undefined) return;
    await delay(50);
  }
}

/** Removes a pod container's traces, or the whole sandbox's when `containerId` is the sandbox. */
export async function cleanupStale(deps: StaleDeps, sandboxId: string, containerId: string): Promise<void> {
  const { store, processes } = deps;
  const saved = await store.load(sandboxId);
  if (containerId !== sandboxId) {
    await store.removeMapping(containerId);
    return;
  }
  const failures: string[] = [];
  const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      failures.push(`${what}: ${describeError(e)}`);
    }
  };
  const vmDir = vmDirOf(store.root, sandboxId);
  if (saved !== undefined) {
    const service = await processes.cmdline(saved.servicePid);
    if (service !== undefined && isService(service, store.root, sandboxId)) {
      await attempt("service process", () => killAndWait(processes, saved.servicePid));
    }
    const vmPid = saved.vmPid;
    if (vmPid !== undefined) {
      const argv = await processes.cmdline(vmPid);
      if (argv !== undefined && isVm(await processes.exe(vmPid), argv, vmDir)) {
        await attempt("qemu process", () => killAndWait(processes, vmPid));
      }
    }
  }
  // After the processes: a cgroup with a live process in it cannot be removed.
  const cgroup = saved?.cgroup;
  const fs = deps.cgroups;
  if (cgroup !== undefined && fs !== undefined) await attempt("cgroup", () => removeStaleCgroup(fs, cgroup));
  await attempt("share directory", () => teardownShare(deps, sharedDirPaths(store.root, sandboxId)));
  await attempt("vm directory", () => rm(vmDir, { recursive: true, force: true }));
  const netns = saved?.netns;
  if (netns !== undefined && (netns.links ?? []).length > 0) {
    await attempt(`network of ${netns.path}`, () => deps.network.teardown(netns.path, netns.links ?? []));
  } else if (netns !== undefined && !netns.created) {
    // Killed while wiring it: the taps were made but never saved. A joined namespace must be left as found.
    await attempt(`network of ${netns.path}`, () => deps.network.sweep(netns.path));
  }
  if (saved?.netns?.created === true) {
    const name = path.basename(saved.netns.path);
    await attempt(`netns ${name}`, () => deps.netns.remove(name));
  }
  for (const c of saved?.containers ?? [{ id: sandboxId }]) {
    await attempt(`mapping of ${c.id}`, () => store.removeMapping(c.id));
  }
  await attempt("state directory", () => store.removeSandbox(sandboxId));
  if (failures.length > 0) {
    deps.logger.warn("stale cleanup left things behind", { sandboxId, failures });
    throw new KataError(Code.Internal, `clean up sandbox ${sandboxId}: ${failures.join("; ")}`);
  }
}
