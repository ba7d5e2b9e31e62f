// Where a VM cache server lives: its socket (claimed only when no live server answers there) and its
// directory and per-VM network namespaces (removed at start, at stop, and by `factory destroy` after a
// dead server).

import { lstat, readdir, rm, unlink } from "node:fs/promises";
import { connect } from "node:net";
import path from "node:path";
import { Code, KataError, errnoOf, ignoreErrno, wrap } from "../base/errors.js";
import { teardownShare } from "../storage/shared-dir.js";
import { sweepCacheNetns } from "./cache-net.js";
import type { TemplateDeps } from "./template.js";

const probeTimeoutMs = 1000;

/** Refuses a live server's socket; removes a dead server's (connection refused: nobody listens). */
export async function claimEndpoint(endpoint: string): Promise<void> {
  const st = await lstat(endpoint).catch(ignoreErrno("ENOENT"));
  if (st === undefined) return;
  if (!st.isSocket()) {
    throw new KataError(Code.FailedPrecondition, `[factory] vm_cache_endpoint ${endpoint} exists and is not a socket`);
  }
  const probe = await new Promise<Error | undefined>((resolve) => {
    const sock = connect(endpoint);
    const timer = setTimeout(() => {
      sock.destroy();
      // Someone holds it and does not even accept: as taken as a live server.
      resolve(undefined);
    }, probeTimeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(undefined);
    });
    sock.once("error", (e) => {
      clearTimeout(timer);
      resolve(e);
    });
  });
  if (probe !== undefined) {
    if (errnoOf(probe) !== "ECONNREFUSED" && errnoOf(probe) !== "ENOENT") throw wrap(probe, `probe ${endpoint}`);
    await unlink(endpoint).catch(ignoreErrno("ENOENT"));
    return;
  }
  throw new KataError(
    Code.AlreadyExists,
    `[factory] vm_cache_endpoint ${endpoint}: a VM cache server already listens there`,
  );
}

/**
 * Removes what a dead server left in its directory (share mounts first: never delete through a bind) and
 * its VMs' network namespaces.
 */
export async function removeCacheDir(deps: TemplateDeps, cacheDir: string): Promise<void> {
  const shares = await readdir(path.join(cacheDir, "share")).catch(ignoreErrno("ENOENT"));
  for (const id of shares ?? []) {
    const root = path.join(cacheDir, "share", id);
    await teardownShare(deps, { root, mounts: path.join(root, "mounts"), shared: path.join(root, "shared") });
  }
  await rm(cacheDir, { recursive: true, force: true });
  if (deps.netns !== undefined) await sweepCacheNetns(deps.netns, cacheDir);
}
