// The host's V8 startup snapshot: one blob (built by `npm run build` on this host, from
// host-snapshot-main.ts) holds the `kata-ts` CLI, the containerd shim and the per-sandbox service with
// every module loaded and every protobuf descriptor built, so none of them pays for loading ~300 ES
// modules at each start. bin/launch.sh starts a process from it when it was built for this node and
// this CPU; the first argument after `--` names the entry. Pure: what the entry points and the service
// launcher decide, tested alone.

import path from "node:path";
import { Code, KataError } from "../base/errors.js";

/** The CommonJS bundle the snapshot is built from, the blob, and the key bin/launch.sh checks it by. */
export const hostBundleRelPath = "dist/host/kata-ts-host.cjs";
export const hostBlobRelPath = "dist/host/kata-ts-host.blob";
export const hostBlobKeyRelPath = "dist/host/kata-ts-host.key";

/** Each entry the blob starts, and the ES module that starts the same thing without it. */
export const hostEntries = {
  "kata-ts": "dist/src/cli/kata-ts-main.js",
  "containerd-shim": "dist/src/cli/containerd-shim-main.js",
  "shim-service": "dist/src/cli/shim-main.js",
} as const;
export type HostEntry = keyof typeof hostEntries;

function isHostEntry(name: string): name is HostEntry {
  return Object.hasOwn(hostEntries, name);
}

/** The blob this process started from (`node --snapshot-blob FILE`), or undefined for a plain start. */
export function snapshotBlobOf(execArgv: readonly string[]): string | undefined {
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i] ?? "";
    if (a === "--snapshot-blob") return execArgv[i + 1];
    if (a.startsWith("--snapshot-blob=")) return a.slice("--snapshot-blob=".length);
  }
  return undefined;
}

/**
 * The arguments (after node) that start the per-sandbox service with `args`. From the same blob as
 * this process when it started from one: that blob loaded, so it fits this node and CPU (a blob that
 * does not makes node exit 14 before any code runs, with nobody left to fall back). Otherwise from its
 * ES module, as before.
 */
export function serviceCommand(installRoot: string, execArgv: readonly string[], args: readonly string[]): string[] {
  const blob = snapshotBlobOf(execArgv);
  if (blob === undefined) return [path.join(installRoot, hostEntries["shim-service"]), ...args];
  return ["--snapshot-blob", path.resolve(blob), "--", "shim-service", ...args];
}

export interface EntryCall {
  readonly entry: HostEntry;
  /** process.argv as the entry's ES module would see it: node, its script, then its arguments. */
  readonly argv: readonly string[];
  readonly args: readonly string[];
}

/** Reads `node --snapshot-blob B -- ENTRY ARGS...`'s process.argv (node, ENTRY, ARGS...). */
export function entryCall(installRoot: string, argv: readonly string[]): EntryCall {
  const [node = "node", name = "", ...args] = argv;
  if (!isHostEntry(name)) {
    const known = Object.keys(hostEntries).join(", ");
    throw new KataError(Code.InvalidArgument, `host snapshot: unknown entry ${JSON.stringify(name)} (known: ${known})`);
  }
  return { entry: name, argv: [node, path.join(installRoot, hostEntries[name]), ...args], args };
}
