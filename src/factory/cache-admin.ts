// `kata-ts factory status | destroy` and `kata-ts env` for the VM cache: ask a running server, or say
// what a dead one left behind and remove it.

import { lstat } from "node:fs/promises";
import { delay } from "../base/async.js";
import { Code, KataError, ignoreErrno, messageOf } from "../base/errors.js";
import type { TemplateDeps } from "./template.js";
import { CacheClient } from "./cache-client.js";
import { claimEndpoint, removeCacheDir } from "./cache-endpoint.js";
import { sweepCacheNetns } from "./cache-net.js";
import { cacheDirOf } from "./cache-wire.js";

export type CacheStatus =
  | {
      readonly state: "running";
      readonly serverPid: number;
      readonly vms: readonly { pid: number; cpu: number; memoryMiB: number }[];
    }
  | { readonly state: "off" }
  | { readonly state: "broken"; readonly reason: string };

const statusTimeoutMs = 3000;

export async function cacheStatus(endpoint: string): Promise<CacheStatus> {
  const st = await lstat(endpoint).catch(ignoreErrno("ENOENT"));
  if (st === undefined) return { state: "off" };
  const client = await CacheClient.open(endpoint);
  try {
    const s = await client.status({ timeoutMs: statusTimeoutMs });
    return {
      state: "running",
      serverPid: Number(s.pid),
      vms: s.vmstatus.map((v) => ({ pid: Number(v.pid), cpu: v.cpu, memoryMiB: v.memory })),
    };
  } catch (e) {
    return { state: "broken", reason: `${endpoint} does not answer: ${messageOf(e)}` };
  } finally {
    client.close();
  }
}

/** How long a server may take to stop its VMs after Quit. */
const quitWaitMs = 20_000;

/**
 * Stops a running server (Quit, then waits for its socket to go) or removes what a dead one left (its
 * socket, its VMs' share mounts, directory and network namespaces). Says which.
 */
export async function destroyCache(deps: TemplateDeps, endpoint: string): Promise<"stopped" | "cleaned" | "none"> {
  const st = await lstat(endpoint).catch(ignoreErrno("ENOENT"));
  const dir = await lstat(cacheDirOf(endpoint)).catch(ignoreErrno("ENOENT"));
  if (st === undefined && dir === undefined) {
    // A directory removed by hand may still leave its VMs' namespaces.
    const swept = deps.netns === undefined ? [] : await sweepCacheNetns(deps.netns, cacheDirOf(endpoint));
    return swept.length > 0 ? "cleaned" : "none";
  }
  let live = false;
  try {
    await claimEndpoint(endpoint);
  } catch (e) {
    if (!(e instanceof KataError && e.code === Code.AlreadyExists)) throw e;
    live = true;
  }
  if (!live) {
    await removeCacheDir(deps, cacheDirOf(endpoint));
    return "cleaned";
  }
  const client = await CacheClient.open(endpoint);
  try {
    await client.quit({ timeoutMs: statusTimeoutMs });
  } finally {
    client.close();
  }
  for (let waited = 0; waited < quitWaitMs; waited += 100) {
    const gone = (await lstat(endpoint).catch(ignoreErrno("ENOENT"))) === undefined;
    const dirGone = (await lstat(cacheDirOf(endpoint)).catch(ignoreErrno("ENOENT"))) === undefined;
    if (gone && dirGone) return "stopped";
    await delay(100);
  }
  throw new KataError(Code.DeadlineExceeded, `the VM cache server on ${endpoint} did not stop within ${quitWaitMs} ms`);
}
