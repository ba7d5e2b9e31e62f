// Guest storages, one handler per driver (Kata agent's storage/ module). Storages are refcounted by
// mount point: a pod's volume is created once and shared by every container that names it, and it
// goes away with its last user (or with the sandbox).

import { mkdir } from "node:fs/promises";
import { Code, KataError, wrap } from "../base/errors.js";
import { CleanupStack } from "../base/cleanup.js";
import type { Logger } from "../base/log.js";
import type { Mounter } from "../platform/mount.js";
import type { Storage } from "../protocol/gen/agent_pb.js";

export interface StorageDeps {
  readonly mounter: Mounter;
  readonly logger: Logger;
}

export interface StorageHandler {
  readonly driver: string;
  /** Makes `s` available at s.mountPoint; returns the undo of exactly what it did. */
  attach(s: Storage, deps: StorageDeps): Promise<() => Promise<void>>;
}

function requireFields(s: Storage): void {
  if (s.mountPoint === "" || !s.mountPoint.startsWith("/") || s.mountPoint.split("/").includes("..")) {
    throw new KataError(
      Code.InvalidArgument,
      `storage ${s.driver}: invalid mount_point ${JSON.stringify(s.mountPoint)}`,
    );
  }
}

/** The sandbox share (9p), mounted at CreateSandbox, never at boot (migration forbids it). */
export const ninePHandler: StorageHandler = {
  driver: "9p",
  async attach(s, deps) {
    if (s.source === "") throw new KataError(Code.InvalidArgument, "storage 9p: empty source (mount tag)");
    await mkdir(s.mountPoint, { recursive: true, mode: 0o755 });
    await deps.mounter.mount({ source: s.source, target: s.mountPoint, fstype: "9p", options: s.options });
    return () => deps.mounter.unmount(s.mountPoint);
  },
};

interface Attached {
  refs: number;
  readonly driver: string;
  readonly detach: () => Promise<void>;
}

export class StorageManager {
  readonly #handlers: ReadonlyMap<string, StorageHandler>;
  readonly #deps: StorageDeps;
  readonly #attached = new Map<string, Attached>();

  constructor(deps: StorageDeps, handlers: readonly StorageHandler[]) {
    this.#deps = deps;
    this.#handlers = new Map(handlers.map((h) => [h.driver, h]));
  }

  /**
   * Attaches every storage (or takes another reference on one already attached at the same mount
   * point) and returns their mount points. A failure undoes what this call did, and only that.
   */
  async add(storages: readonly Storage[]): Promise<string[]> {
    const undo = new CleanupStack();
    const points: string[] = [];
    try {
      for (const s of storages) {
        requireFields(s);
        const handler = this.#handlers.get(s.driver);
        if (handler === undefined) {
          throw new KataError(Code.InvalidArgument, `unknown storage driver ${JSON.stringify(s.driver)}`);
        }
        const have = this.#attached.get(s.mountPoint);
        if (have !== undefined) {
          if (have.driver !== s.driver) {
            throw new KataError(
              Code.AlreadyExists,
              `mount point ${s.mountPoint} already holds a ${have.driver} storage, not ${s.driver}`,
            );
          }
          have.refs++;
        } else {
          const detach = await handler.attach(s, this.#deps).catch((e: unknown) => {
            throw wrap(e, `attach ${s.driver} storage at ${s.mountPoint}`);
          });
          this.#attached.set(s.mountPoint, { refs: 1, driver: s.driver, detach });
        }
        points.push(s.mountPoint);
        undo.defer(`release ${s.mountPoint}`, () => this.release([s.mountPoint]));
      }
      undo.release();
      return points;
    } catch (e) {
      return undo.unwind(e);
    }
  }

  /** Drops one reference on each mount point; the last one detaches it. */
  async release(mountPoints: readonly string[]): Promise<void> {
    const failures: string[] = [];
    for (const p of [...mountPoints].reverse()) {
      const a = this.#attached.get(p);
      if (a === undefined) continue;
      a.refs--;
      if (a.refs > 0) continue;
      this.#attached.delete(p);
      await a.detach().catch((e: unknown) => failures.push(`${p}: ${wrap(e, "detach").message}`));
    }
    if (failures.length > 0) throw new KataError(Code.Internal, `release storages: ${failures.join("; ")}`);
  }

  /** Detaches everything, most recent first (DestroySandbox). */
  async releaseAll(): Promise<void> {
    const points = [...this.#attached.keys()];
    for (const p of points) {
      const a = this.#attached.get(p);
      if (a !== undefined) a.refs = 1;
    }
    await this.release(points);
  }

  refs(mountPoint: string): number {
    return this.#attached.get(mountPoint)?.refs ?? 0;
  }
}
