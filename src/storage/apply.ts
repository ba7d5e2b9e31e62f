// The thin side of storage planning: inspect the bind sources before planning, and make the planned
// host binds under the sandbox share afterwards. Everything that decides lives in plan.ts.

import { lstat, realpath } from "node:fs/promises";
import type { Stats } from "node:fs";
import { errnoOf, wrap } from "../base/errors.js";
import type { CleanupStack } from "../base/cleanup.js";
import type { HostBind, SourceInfo } from "./plan.js";
import type { SharedDir } from "./shared-dir.js";

function kindOf(st: Stats): SourceInfo["kind"] {
  if (st.isSymbolicLink()) return "symlink";
  if (st.isDirectory()) return "dir";
  if (st.isFile()) return "file";
  return "other";
}

/** Errors that mean "there is nothing there": a missing entry or a path through a non-directory. */
const absent = new Set(["ENOENT", "ENOTDIR"]);

async function inspectOne(p: string): Promise<SourceInfo> {
  let st: Stats;
  try {
    st = await lstat(p);
  } catch (e) {
    if (absent.has(errnoOf(e) ?? "")) return { kind: "missing", gid: 0, realPath: p };
    throw wrap(e, `inspect mount source ${p}`);
  }
  let real: string;
  try {
    real = await realpath(p);
  } catch (e) {
    // A dangling symlink or a loop: the planner refuses it by name.
    if (absent.has(errnoOf(e) ?? "") || errnoOf(e) === "ELOOP") return { kind: kindOf(st), gid: st.gid, realPath: "" };
    throw wrap(e, `resolve mount source ${p}`);
  }
  return { kind: kindOf(st), gid: st.gid, realPath: real };
}

/**
 * lstat (the kind is the entry's own: a symlink is not followed), realpath and group of each path.
 * A symlink's resolved target is inspected too, under its own path, so the planner knows what it binds.
 */
export async function inspectSources(paths: readonly string[]): Promise<Map<string, SourceInfo>> {
  const out = new Map<string, SourceInfo>();
  for (const p of paths) {
    if (out.has(p)) continue;
    const info = await inspectOne(p);
    out.set(p, info);
    if (info.kind === "symlink" && info.realPath !== "" && !out.has(info.realPath)) {
      out.set(info.realPath, await inspectOne(info.realPath));
    }
  }
  return out;
}

/**
 * Binds each planned source under the share's mounts/ dir (read-only ones read-only on the host too,
 * CVE-2020-28914), all in one helper run, and records the unbind of each one made on `undo`, so a later
 * failure or the container's removal takes them away again.
 */
export async function applyHostBinds(share: SharedDir, binds: readonly HostBind[], undo: CleanupStack): Promise<void> {
  let made = 0;
  try {
    await share.bindAll(binds, (relative) => {
      made++;
      undo.defer(`unshare ${relative}`, () => share.unbind(relative));
    });
  } catch (e) {
    const b = binds[made];
    throw b === undefined ? e : wrap(e, `share ${b.source} with the guest as ${b.relative}`);
  }
}
