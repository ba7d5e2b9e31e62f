// Guest storage for component tests: records what would be mounted, with the real StorageManager's
// rules (refcounts by mount point, `shared` storages kept until the sandbox goes, a failed add undoes
// only what it did) and none of its mounts or directories. Each call completes in one turn, so calls
// never interleave and the real manager's lock is not needed.

import { Code, KataError } from "../../src/base/errors.js";
import type { StoragePort } from "../../src/guest/storage.js";
import type { Storage } from "../../src/protocol/gen/agent_pb.js";

interface Attached {
  readonly storage: Storage;
  refs: number;
}

export class FakeStorage implements StoragePort {
  /** Drivers the agent's composition root registers; others are refused as the real manager does. */
  readonly drivers: ReadonlySet<string> = new Set(["9p", "ephemeral", "local"]);
  /** Returns an error to make attaching `s` fail (after the storages before it were attached). */
  failAttach: ((s: Storage) => Error | undefined) | undefined;
  readonly #attached = new Map<string, Attached>();

  /** Mount points attached now, in attach order. */
  attached(): string[] {
    return [...this.#attached.keys()];
  }

  /** The storage attached at `mountPoint`, if any. */
  storage(mountPoint: string): Storage | undefined {
    return this.#attached.get(mountPoint)?.storage;
  }

  /** Containers using the storage at `mountPoint` (a shared one may be attached with 0). */
  refs(mountPoint: string): number {
    return this.#attached.get(mountPoint)?.refs ?? 0;
  }

  add(storages: readonly Storage[]): Promise<string[]> {
    const done: { mountPoint: string; created: boolean }[] = [];
    try {
      for (const s of storages) {
        if (!s.mountPoint.startsWith("/") || s.mountPoint.split("/").includes("..")) {
          throw new KataError(Code.InvalidArgument, `storage ${s.driver}: invalid mount_point ${s.mountPoint}`);
        }
        if (!this.drivers.has(s.driver)) {
          throw new KataError(Code.InvalidArgument, `unknown storage driver ${JSON.stringify(s.driver)}`);
        }
        const have = this.#attached.get(s.mountPoint);
        if (have !== undefined) {
          if (have.storage.driver !== s.driver) {
            throw new KataError(
              Code.AlreadyExists,
              `mount point ${s.mountPoint} already holds a ${have.storage.driver}`,
            );
          }
          have.refs++;
          done.push({ mountPoint: s.mountPoint, created: false });
          continue;
        }
        const failure = this.failAttach?.(s);
        if (failure !== undefined) throw failure;
        this.#attached.set(s.mountPoint, { storage: s, refs: 1 });
        done.push({ mountPoint: s.mountPoint, created: true });
      }
      return Promise.resolve(done.map((d) => d.mountPoint));
    } catch (e) {
      for (const d of done.reverse()) this.#drop(d.mountPoint, d.created);
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  release(mountPoints: readonly string[]): Promise<void> {
    for (const p of [...mountPoints].reverse()) this.#drop(p, false);
    return Promise.resolve();
  }

  releaseAll(): Promise<void> {
    this.#attached.clear();
    return Promise.resolve();
  }

  #drop(mountPoint: string, detachUnused: boolean): void {
    const a = this.#attached.get(mountPoint);
    if (a === undefined) return;
    if (a.refs > 0) a.refs--;
    if (a.refs > 0 || (a.storage.shared && !detachUnused)) return;
    this.#attached.delete(mountPoint);
  }
}
