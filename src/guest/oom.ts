// Out-of-memory kills in containers, for GetOOMEvent: each running container's cgroup v2
// memory.events is watched (inotify, which the kernel raises on every change of that file) and its
// oom_kill count read; every increase is one event naming the container. The file is read as soon as
// it changes, with a slow poll besides in case a notification is missed, and once more when the
// container's init exits (its cgroup stays until crun deletes the container).

import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Code, KataError } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import { errField } from "../base/log.js";

/** The oom_kill count of a memory.events text, or undefined when it has none. */
export function oomKills(text: string): number | undefined {
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** Poll period besides the notifications: a missed one costs at most this much delay. */
const pollMs = 1000;
/** Events kept for a host that is not asking; older ones are dropped (counted in the log). */
const maxQueued = 1024;

/** The queue of OOM events of a guest, and the watchers that fill it. */
export class OomEvents {
  readonly #queue: string[] = [];
  readonly #waiters: ((id: string) => void)[] = [];
  readonly #watches = new Map<string, () => void>();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Resolves with the next container that had a process killed for memory; rejects when `signal` aborts. */
  next(signal?: AbortSignal): Promise<string> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise<string>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(deliver);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new KataError(Code.Cancelled, "wait for an OOM event: cancelled"));
      };
      const deliver = (id: string): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve(id);
      };
      if (signal?.aborted === true) {
        onAbort();
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(deliver);
    });
  }

  /** Starts watching the container's cgroup (it may not exist yet: crun makes it as it starts). */
  watch(containerId: string, cgroupDir: string): void {
    this.unwatch(containerId);
    const file = path.join(cgroupDir, "memory.events");
    let seen = 0;
    let watcher: FSWatcher | undefined;
    let stopped = false;
    const check = async (): Promise<void> => {
      let text: string;
      try {
        text = await readFile(file, "utf8");
      } catch {
        // Not made yet, or gone with the container: nothing to count.
        return;
      }
      const kills = oomKills(text) ?? 0;
      for (; seen < kills; seen++) this.#emit(containerId);
      if (watcher === undefined && !stopped) {
        try {
          watcher = watch(file, () => {
            void check();
          });
          watcher.on("error", (e) => {
            // The cgroup went with its container; the poll (stopped at exit) is all there is left.
            this.#log.debug("memory.events watch ended", { containerId, err: errField(e) });
          });
        } catch (e) {
          this.#log.debug("watch memory.events", { containerId, err: errField(e) });
        }
      }
    };
    const timer = setInterval(() => {
      void check();
    }, pollMs);
    void check();
    this.#watches.set(containerId, () => {
      stopped = true;
      clearInterval(timer);
      watcher?.close();
      // The kill that ended the container may not have been read yet: the cgroup stays until delete.
      void check();
    });
  }

  /** Stops watching once the container ended, after a last read of its count. */
  unwatch(containerId: string): void {
    const stop = this.#watches.get(containerId);
    if (stop === undefined) return;
    this.#watches.delete(containerId);
    stop();
  }

  #emit(containerId: string): void {
    this.#log.warn("container had a process killed by the out-of-memory killer", { containerId });
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter(containerId);
      return;
    }
    if (this.#queue.length >= maxQueued) this.#queue.shift();
    this.#queue.push(containerId);
  }
}
