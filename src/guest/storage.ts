// Guest storages, one handler per driver (Kata agent's storage/ module). Storages are refcounted by
// mount point: a pod's volume is created once and shared by every container that names it. A storage
// marked `shared` (a pod volume) outlives its containers, as a Kubernetes emptyDir survives container
// restarts: it goes with the sandbox (Kata 2.x's StorageState.shared). Others go with their last user.

import { chmod, chown, lstat, mkdir, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { Code, KataError, firstFailure, ignoreErrno, wrap } from "../base/errors.js";
import { CleanupStack } from "../base/cleanup.js";
import { KeyedLock } from "../base/lock.js";
import type { Logger } from "../base/log.js";
import type { Mounter } from "../platform/mount.js";
import type { Storage } from "../protocol/gen/agent_pb.js";
import { guestSandboxDir, guestSharedDir } from "../protocol/guest-paths.js";

export interface StorageDeps {
  readonly mounter: Mounter;
  readonly logger: Logger;
  /** Where the guest's "/" is for this module's files and mounts: "/" in the VM, a temp dir in tests. */
  readonly fsRoot?: string;
}

export interface StorageHandler {
  readonly driver: string;
  /** Makes `s` available at s.mountPoint; returns the undo of exactly what it did. */
  attach(s: Storage, deps: StorageDeps): Promise<() => Promise<void>>;
}

/** Kata's MODE_SETGID: files created in an fsGroup volume inherit its group. */
const modeSetgid = 0o2000;

function requireFields(s: Storage): void {
  if (s.mountPoint === "" || !s.mountPoint.startsWith("/") || s.mountPoint.split("/").includes("..")) {
    throw new KataError(
      Code.InvalidArgument,
      `storage ${s.driver}: invalid mount_point ${JSON.stringify(s.mountPoint)}`,
    );
  }
}

/** The real path of guest path `p` (fsRoot prefixed). */
function at(deps: StorageDeps, p: string): string {
  return deps.fsRoot === undefined || deps.fsRoot === "/" ? p : path.join(deps.fsRoot, p);
}

/** These handlers delete what they made: confine them to the directories the host may name. */
function requireUnder(s: Storage, dir: string): void {
  if (!s.mountPoint.startsWith(dir + "/")) {
    throw new KataError(Code.InvalidArgument, `storage ${s.driver}: mount_point ${s.mountPoint} is not under ${dir}`);
  }
}

interface ParsedOptions {
  /** Options for mount(8), with the agent's own (fsgid) removed. */
  readonly mount: string[];
  readonly mode: number | undefined;
  readonly fsGid: number | undefined;
}

function parseOptions(s: Storage): ParsedOptions {
  const mount: string[] = [];
  let mode: number | undefined;
  let fsGid: number | undefined;
  for (const o of s.options) {
    const eq = o.indexOf("=");
    const key = eq < 0 ? o : o.slice(0, eq);
    const value = eq < 0 ? "" : o.slice(eq + 1);
    if (key === "fsgid") {
      if (!/^\d{1,10}$/.test(value) || Number(value) > 0xffffffff) {
        throw new KataError(Code.InvalidArgument, `storage ${s.driver}: invalid option ${JSON.stringify(o)}`);
      }
      fsGid = Number(value);
      continue;
    }
    if (key === "mode") {
      if (!/^[0-7]{1,4}$/.test(value)) {
        throw new KataError(Code.InvalidArgument, `storage ${s.driver}: invalid option ${JSON.stringify(o)}`);
      }
      mode = parseInt(value, 8);
    }
    mount.push(o);
  }
  return { mount, mode, fsGid };
}

/** Gives `dir` the volume's group with the setgid bit, so new files inherit it (kata#1580). */
async function applyFsGroup(dir: string, gid: number, mode: number): Promise<void> {
  await chown(dir, -1, gid);
  await chmod(dir, mode | modeSetgid);
}

/** The sandbox share (9p), mounted at CreateSandbox, never at boot (migration forbids it). */
export const ninePHandler: StorageHandler = {
  driver: "9p",
  async attach(s, deps) {
    if (s.source === "") throw new KataError(Code.InvalidArgument, "storage 9p: empty source (mount tag)");
    const target = at(deps, s.mountPoint);
    await mkdir(target, { recursive: true, mode: 0o755 });
    await deps.mounter.mount({ source: s.source, target, fstype: "9p", options: s.options });
    return () => deps.mounter.unmount(target);
  },
};

/** A memory-backed filesystem made in the guest: the pod's shm, tmpfs and hugepage emptyDirs. */
export const ephemeralHandler: StorageHandler = {
  driver: "ephemeral",
  async attach(s, deps) {
    if (s.fstype !== "tmpfs" && s.fstype !== "hugetlbfs") {
      throw new KataError(Code.InvalidArgument, `storage ephemeral: unsupported fstype ${JSON.stringify(s.fstype)}`);
    }
    requireUnder(s, guestSandboxDir);
    const opts = parseOptions(s);
    const target = at(deps, s.mountPoint);
    const undo = new CleanupStack();
    try {
      const created = await mkdir(target, { recursive: true, mode: 0o755 });
      if (created !== undefined) undo.defer(`remove ${target}`, () => rmdir(target).catch(ignoreErrno("ENOENT")));
      await deps.mounter.mount({ source: s.source || s.fstype, target, fstype: s.fstype, options: opts.mount });
      undo.defer(`unmount ${target}`, () => deps.mounter.unmount(target));
      if (opts.fsGid !== undefined) {
        const { mode } = await lstat(target);
        await applyFsGroup(target, opts.fsGid, mode & 0o7777);
      }
      undo.release();
    } catch (e) {
      return undo.unwind(e);
    }
    return async () => {
      await deps.mounter.unmount(target);
      await rmdir(target).catch(ignoreErrno("ENOENT"));
    };
  },
};

/** A disk emptyDir: a directory in the sandbox's own storage (under the pause container's rootfs). */
export const localHandler: StorageHandler = {
  driver: "local",
  async attach(s, deps) {
    requireUnder(s, guestSharedDir);
    const opts = parseOptions(s);
    const target = at(deps, s.mountPoint);
    const undo = new CleanupStack();
    try {
      const created = await mkdir(target, { recursive: true });
      if (created !== undefined) undo.defer(`remove ${target}`, () => rm(target, { recursive: true, force: true }));
      // chmod/chown follow symlinks: make sure the host-named path is the directory we made or found.
      const st = await lstat(target);
      if (!st.isDirectory()) {
        throw new KataError(Code.FailedPrecondition, `storage local: ${s.mountPoint} is not a directory`);
      }
      // mkdir's mode is masked by the umask (0777 became 0755, agent#636): set it explicitly. The host
      // makes the directory with its mode and group first (QEMU may not set a setgid bit for the guest):
      // what is already right is left alone.
      const mode = (opts.mode ?? 0o777) | (opts.fsGid === undefined ? 0 : modeSetgid);
      const right = (st.mode & 0o7777) === mode && (opts.fsGid === undefined || st.gid === opts.fsGid);
      if (!right && opts.fsGid !== undefined) await applyFsGroup(target, opts.fsGid, mode);
      else if (!right) await chmod(target, mode);
      undo.release();
    } catch (e) {
      return undo.unwind(e);
    }
    // No container uses it any more and the sandbox goes: the volume's data goes with it.
    return () => rm(target, { recursive: true, force: true });
  },
};

/** Every handler of the agent, for its composition root. */
export const guestStorageHandlers: readonly StorageHandler[] = [ninePHandler, ephemeralHandler, localHandler];

interface Attached {
  refs: number;
  readonly driver: string;
  readonly shared: boolean;
  readonly detach: () => Promise<void>;
}

/** What the agent asks of guest storage; StorageManager is the real one (a class, hence nominal). */
export interface StoragePort {
  /** Attaches (or takes another reference on) each storage; returns their mount points. */
  add(storages: readonly Storage[]): Promise<string[]>;
  /** Drops one reference on each mount point. */
  release(mountPoints: readonly string[]): Promise<void>;
  /** Detaches everything (DestroySandbox). */
  releaseAll(): Promise<void>;
}

export class StorageManager implements StoragePort {
  readonly #handlers: ReadonlyMap<string, StorageHandler>;
  readonly #deps: StorageDeps;
  readonly #attached = new Map<string, Attached>();
  /** Containers are created concurrently; two must not both attach one pod volume. */
  readonly #lock = new KeyedLock();

  constructor(deps: StorageDeps, handlers: readonly StorageHandler[]) {
    this.#deps = deps;
    this.#handlers = new Map(handlers.map((h) => [h.driver, h]));
  }

  /**
   * Attaches every storage (or takes another reference on one already attached at the same mount
   * point) and returns their mount points. A failure undoes what this call did, and only that.
   */
  add(storages: readonly Storage[]): Promise<string[]> {
    return this.#lock.with("storages", async () => {
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
            undo.defer(`release ${s.mountPoint}`, () => this.#drop(s.mountPoint, false));
          } else {
            const detach = await handler.attach(s, this.#deps).catch((e: unknown) => {
              throw wrap(e, `attach ${s.driver} storage at ${s.mountPoint}`);
            });
            this.#attached.set(s.mountPoint, { refs: 1, driver: s.driver, shared: s.shared, detach });
            // This call made it, so its rollback removes it, shared or not.
            undo.defer(`detach ${s.mountPoint}`, () => this.#drop(s.mountPoint, true));
          }
          points.push(s.mountPoint);
        }
        undo.release();
        return points;
      } catch (e) {
        return undo.unwind(e);
      }
    });
  }

  /** Drops one reference on each mount point; the last one detaches it, unless it is shared. */
  release(mountPoints: readonly string[]): Promise<void> {
    return this.#lock.with("storages", async () => {
      const failures: KataError[] = [];
      for (const p of [...mountPoints].reverse()) {
        await this.#drop(p, false).catch((e: unknown) => failures.push(wrap(e, `detach ${p}`)));
      }
      const failed = firstFailure("release storages", failures);
      if (failed !== undefined) throw failed;
    });
  }

  /** Detaches everything, shared or not, most recent first (DestroySandbox). */
  releaseAll(): Promise<void> {
    return this.#lock.with("storages", async () => {
      const failures: KataError[] = [];
      for (const p of [...this.#attached.keys()].reverse()) {
        const a = this.#attached.get(p);
        if (a === undefined) continue;
        this.#attached.delete(p);
        await a.detach().catch((e: unknown) => failures.push(wrap(e, `detach ${p}`)));
      }
      const failed = firstFailure("release storages", failures);
      if (failed !== undefined) throw failed;
    });
  }

  /** Containers currently using the storage at `mountPoint` (a shared one may be attached with 0). */
  refs(mountPoint: string): number {
    return this.#attached.get(mountPoint)?.refs ?? 0;
  }

  async #drop(mountPoint: string, detachUnused: boolean): Promise<void> {
    const a = this.#attached.get(mountPoint);
    if (a === undefined) return;
    if (a.refs > 0) a.refs--;
    if (a.refs > 0 || (a.shared && !detachUnused)) return;
    this.#attached.delete(mountPoint);
    await a.detach();
  }
}
