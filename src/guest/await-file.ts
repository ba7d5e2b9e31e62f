// Waiting for a file another process makes (crun's state file of a new container), woken by inotify
// instead of a fixed poll: under TCG a start waited on average half the poll interval after crun had
// made the container, and a short poll takes CPU from crun on the guest's one vCPU.

import { watch, type FSWatcher } from "node:fs";
import { lstat } from "node:fs/promises";
import path from "node:path";
import { delay } from "../base/async.js";
import { ignoreErrno } from "../base/errors.js";

export interface AwaitFileOptions {
  /** Resolve false once this settles (the process that would make the file has exited). */
  readonly until: Promise<unknown>;
  readonly timeoutMs: number;
  /**
   * Checked this often as well, so a missed or unavailable inotify event costs at most this: directories
   * that do not exist yet cannot be watched until they do.
   */
  readonly fallbackPollMs?: number;
}

/**
 * Resolves true once `file` exists, false when `until` settled or the time is up first. Watches each
 * of the file's ancestors from `watchFrom` down as they appear (fs.watch is not recursive), so the
 * creation of a directory on the way wakes it as well as the file's own.
 */
export async function awaitFile(watchFrom: string, file: string, opts: AwaitFileOptions): Promise<boolean> {
  const dirs: string[] = [];
  for (let d = path.dirname(file); d.startsWith(watchFrom); d = path.dirname(d)) {
    dirs.unshift(d);
    if (d === watchFrom || d === path.dirname(d)) break;
  }
  const watchers = new Map<string, FSWatcher>();
  // An object, not lets: the callbacks below change it between the loop's looks.
  const state = { events: 0, ended: false };
  let wake: (() => void) | undefined;
  const notify = (): void => {
    state.events++;
    wake?.();
  };
  void Promise.allSettled([opts.until]).then(() => {
    state.ended = true;
    notify();
  });
  const end = Date.now() + opts.timeoutMs;
  try {
    for (;;) {
      // Watch before looking, so a file made between the look and the wait still wakes the wait.
      for (const d of dirs) {
        if (watchers.has(d)) continue;
        try {
          const w = watch(d, { persistent: false }, notify);
          w.on("error", () => undefined);
          watchers.set(d, w);
        } catch {
          break; // not there yet (or no inotify): its parent's watch or the poll sees it come
        }
      }
      const seen = state.events;
      if ((await lstat(file).catch(ignoreErrno("ENOENT", "ENOTDIR"))) !== undefined) return true;
      if (state.ended) return false;
      const left = end - Date.now();
      if (left <= 0) return false;
      if (state.events === seen) {
        await Promise.race([
          new Promise<void>((resolve) => {
            wake = resolve;
          }),
          delay(Math.min(left, opts.fallbackPollMs ?? 50)),
        ]);
        wake = undefined;
      }
    }
  } finally {
    for (const w of watchers.values()) w.close();
  }
}
