// The host side of NICs in cached VMs (cache-net-plan.ts decides): each cached VM's own netns, made by
// the cache server before its QEMU starts and removed when the VM leaves the cache (taken over, stopped,
// or swept after a dead server), and the tap move a sandbox runs once the VM is its own.

import { open, readdir } from "node:fs/promises";
import { abortError } from "../base/async.js";
import { Code, KataError, firstFailure, ignoreErrno } from "../base/errors.js";
import { netnsPathOf, netnsRunDir, type NetnsPort } from "../network/netns.js";
import { describeExit } from "../platform/process.js";
import { cacheNetnsName, cacheNetnsPrefix, type CacheTapStep } from "./cache-net-plan.js";

/** A fresh netns for cached VM `vmId` (one a killed server left under that name is replaced); its path. */
export async function makeVmNetns(
  netns: NetnsPort,
  cacheDir: string,
  vmId: string,
  signal: AbortSignal,
): Promise<string> {
  const name = cacheNetnsName(cacheDir, vmId);
  await netns.remove(name);
  return netns.create(name, signal);
}

/**
 * Removes the name of cached VM `vmId`'s netns. Its QEMU, still running in it, keeps the namespace alive
 * (and the tap in it, if the VM's new owner left it there) until it exits.
 */
export function removeVmNetns(netns: NetnsPort, cacheDir: string, vmId: string): Promise<void> {
  return netns.remove(cacheNetnsName(cacheDir, vmId));
}

/** Removes every netns of this cache's VMs (a dead server's, or at stop); returns their names. */
export async function sweepCacheNetns(netns: NetnsPort, cacheDir: string, runDir = netnsRunDir): Promise<string[]> {
  const prefix = cacheNetnsPrefix(cacheDir);
  const names = ((await readdir(runDir).catch(ignoreErrno("ENOENT"))) ?? []).filter((n) => n.startsWith(prefix));
  const failures: unknown[] = [];
  for (const n of names) await netns.remove(n).catch((e: unknown) => failures.push(e));
  const failure = firstFailure(`remove the VM cache's network namespaces (${prefix}*)`, failures);
  if (failure !== undefined) throw failure;
  return names;
}

/**
 * Holds cached VM `vmId`'s netns open (the server removes its name once the VM is taken over, maybe
 * before the tap has moved out): `path` reaches it through this process's descriptor until `close`.
 */
export async function holdVmNetns(
  cacheDir: string,
  vmId: string,
): Promise<{ readonly path: string; close(): Promise<void> }> {
  const fh = await open(netnsPathOf(cacheNetnsName(cacheDir, vmId)), "r");
  return { path: `/proc/${process.pid}/fd/${fh.fd}`, close: () => fh.close() };
}

/**
 * Moves a cached VM's tap (its netns at `paths.cache`) into the pod's netns and wires it there (CacheTapPlan "move"). Not undone
 * step by step: the tap is QEMU's (it goes when QEMU does, wherever it is), and what else is changed in
 * the pod's netns (its tap, the veth's filter) the network setup's own undo removes by name.
 */
export async function moveCachedTap(
  netns: NetnsPort,
  paths: { readonly cache: string; readonly pod: string },
  steps: readonly CacheTapStep[],
  signal: AbortSignal,
): Promise<void> {
  for (const { where, op } of steps) {
    const nsPath = where === "cache" ? paths.cache : paths.pod;
    const r = await netns.run(nsPath, op.file, op.args, { signal });
    const line = `${op.file} ${op.args.join(" ")}`;
    if (signal.aborted) throw abortError(signal, `${line} in ${nsPath}`);
    if (r.code !== 0) {
      throw new KataError(
        Code.Internal,
        `${line} (interface ${op.iface}) in ${nsPath}: ${describeExit(r)}: ${r.stderr.trim()}`,
        { details: { iface: op.iface, nsPath } },
      );
    }
  }
}
