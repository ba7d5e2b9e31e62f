// Cleaning up after a sandbox whose service died (SIGKILL, OOM, host crash): `delete --force` finds
// what the state directory says was created and removes it. Processes are checked by their command
// line before they are killed, so a recycled pid is never shot.

import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { Code, KataError, describeError, errnoOf, ignoreErrno } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import type { NetnsManager } from "../network/netns.js";
import type { Mounter } from "../platform/mount.js";
import { SharedDir, sharedDirPaths } from "../storage/shared-dir.js";
import type { StateStore } from "./persist.js";

export interface StaleDeps {
  readonly store: StateStore;
  readonly mounter: Mounter;
  readonly readMountInfo: () => Promise<string>;
  readonly netns: NetnsManager;
  readonly logger: Logger;
}

async function cmdline(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ");
}

function kill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch (e) {
    // ESRCH: it is already gone, which is what we wanted.
    if (errnoOf(e) !== "ESRCH") throw e;
  }
}

/** Removes a pod container's traces, or the whole sandbox's when `containerId` is the sandbox. */
export async function cleanupStale(deps: StaleDeps, sandboxId: string, containerId: string): Promise<void> {
  const { store } = deps;
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
  if (saved !== undefined) {
    if ((await cmdline(saved.servicePid)).includes(`--id ${sandboxId}`)) kill(saved.servicePid);
    if (saved.vmPid !== undefined && (await cmdline(saved.vmPid)).startsWith("qemu-system")) kill(saved.vmPid);
  }
  await attempt("share directory", () => new SharedDir(deps, sharedDirPaths(store.root, sandboxId)).teardown());
  await attempt("vm directory", () => rm(path.join(store.root, "vm", sandboxId), { recursive: true, force: true }));
  if (saved?.netns?.created === true) {
    const name = path.basename(saved.netns.path);
    await attempt(`netns ${name}`, () => deps.netns.remove(name));
  }
  for (const c of saved?.containers ?? [{ id: sandboxId }]) {
    await attempt(`mapping of ${c.id}`, () => store.removeMapping(c.id));
  }
  await attempt("state directory", () => store.removeSandbox(sandboxId).catch(ignoreErrno("ENOENT")));
  if (failures.length > 0) deps.logger.warn("stale cleanup left things behind", { sandboxId, failures });
  if (failures.length > 0) throw new KataError(Code.Internal, `clean up sandbox ${sandboxId}: ${failures.join("; ")}`);
}
