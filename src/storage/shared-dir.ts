// The host side of a sandbox's shared filesystem (CVE-2020-2026): the host bind-mounts container
// rootfs and volumes under a host-only `mounts/` directory, and the hypervisor exports `shared/`, a
// read-only bind of `mounts/`. The guest can write inside a bound rootfs but can never create an entry
// (a symlink, say) that the host would later follow.
//
// `/` is a private mount on hosts without systemd, so a bind made under `mounts/` after `shared/` was
// set up would not appear in `shared/` (a Kata 1.x failure). We make `mounts/` a shared mount of its
// own and `shared/` its slave: new binds propagate one way, host to guest view.

import { lstat, mkdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { Code, KataError, ignoreErrno, withSuppressed, wrap } from "../base/errors.js";
import { CleanupStack } from "../base/cleanup.js";
import type { Mounter } from "../platform/mount.js";
import type { ShareBinder } from "../platform/share-binder.js";
import type { HostDir } from "./plan.js";
import { mountsUnder, parseMountInfo } from "../platform/mountinfo.js";

export interface SharedDirPaths {
  /** <run>/shared/sandboxes/<sid> */
  readonly root: string;
  /** host-only: where the host binds things */
  readonly mounts: string;
  /** exported read-only to the guest */
  readonly shared: string;
}

export function sharedDirPaths(runDir: string, sandboxId: string): SharedDirPaths {
  const root = path.join(runDir, "shared", "sandboxes", sandboxId);
  return { root, mounts: path.join(root, "mounts"), shared: path.join(root, "shared") };
}

/** What tearing a share down needs. */
export interface ShareTeardownDeps {
  readonly mounter: Mounter;
  readonly readMountInfo: () => Promise<string>;
}

export interface SharedDirDeps extends ShareTeardownDeps {
  readonly binder: ShareBinder;
}

export const readSelfMountInfo = (): Promise<string> => readFile("/proc/self/mountinfo", "utf8");

export class SharedDir {
  readonly paths: SharedDirPaths;
  readonly #deps: SharedDirDeps;

  constructor(deps: SharedDirDeps, paths: SharedDirPaths) {
    this.#deps = deps;
    this.paths = paths;
  }

  /** Creates mounts/ and the read-only shared/ view. On failure nothing is left behind. */
  async setup(): Promise<void> {
    const { mounter, binder } = this.#deps;
    const { root, mounts, shared } = this.paths;
    const undo = new CleanupStack();
    try {
      await mkdir(root, { recursive: true, mode: 0o700 });
      undo.defer(`remove ${root}`, () => rm(root, { recursive: true, force: true }));
      await mkdir(mounts, { mode: 0o700 });
      await mkdir(shared, { mode: 0o700 });
      // One helper run for the five mount calls (a spawn each cost ~10 ms from the runtime's process).
      await binder.makeViews(mounts, shared);
      undo.defer(`unmount ${mounts}`, () => mounter.unmount(mounts));
      undo.defer(`unmount ${shared}`, () => mounter.unmount(shared));
      undo.release();
    } catch (e) {
      await undo.unwind(wrap(e, `set up shared directory ${root}`));
    }
  }

  /** Host path under mounts/ for a relative guest-visible path like "<cid>/rootfs". */
  hostPath(relative: string): string {
    const p = path.join(this.paths.mounts, relative);
    if (!p.startsWith(this.paths.mounts + path.sep)) {
      throw new KataError(Code.InvalidArgument, `shared path ${JSON.stringify(relative)} escapes ${this.paths.mounts}`);
    }
    return p;
  }

  /**
   * Binds `source` (a directory) at mounts/<relative>, through the ShareBinder: opened once without
   * following symlinks, mounted from that descriptor at a target that cannot leave mounts/ or enter
   * another bind. A read-only bind is read-only on the host too (CVE-2020-28914), in both views.
   */
  async bindDir(source: string, relative: string, readonly: boolean, signal?: AbortSignal): Promise<string> {
    return this.#bind({ source, relative, readonly, kind: "dir" }, signal);
  }

  /** Binds `source` (a regular file) at mounts/<relative>, over an empty file made for it; as bindDir. */
  async bindFile(source: string, relative: string, readonly: boolean, signal?: AbortSignal): Promise<string> {
    return this.#bind({ source, relative, readonly, kind: "file" }, signal);
  }

  async #bind(
    b: { source: string; relative: string; readonly: boolean; kind: "dir" | "file" },
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const target = this.hostPath(b.relative);
    await this.#deps.binder.bind({ ...b, root: this.paths.mounts }, signal);
    return target;
  }

  /**
   * Binds each of `binds` under mounts/ as bindDir and bindFile do, in one go; `onBound` with each
   * relative path once it is mounted (the caller's to unbind, also when a later one fails).
   */
  async bindAll(
    binds: readonly { source: string; relative: string; readonly: boolean; kind: "dir" | "file" }[],
    onBound: (relative: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    for (const b of binds) this.hostPath(b.relative);
    const root = this.paths.mounts;
    await this.#deps.binder.bindAll(
      binds.map((b) => ({ ...b, root })),
      (b) => {
        onBound(b.relative);
      },
      signal,
    );
  }

  /** Makes a directory (mode, group) inside a bind under mounts/, without following anything the guest made. */
  async makeDir(d: HostDir, signal?: AbortSignal): Promise<void> {
    const root = this.hostPath(d.within);
    await this.#deps.binder.makeDir(
      { root, relative: d.relative, mode: d.mode, ...(d.gid === undefined ? {} : { gid: d.gid }) },
      signal,
    );
  }

  /**
   * Unmounts what bindDir or bindFile mounted (detached when the VM still holds it) and removes its
   * mount point, resolved as it was made.
   */
  async unbind(relative: string, signal?: AbortSignal): Promise<void> {
    this.hostPath(relative);
    await this.#deps.binder.unbind(this.paths.mounts, relative, signal);
  }

  /** See teardownShare. */
  teardown(): Promise<void> {
    return teardownShare(this.#deps, this.paths);
  }
}

/**
 * Unmounts everything under a sandbox's share root and removes it (also after the service died: stale
 * cleanup). Never removes files while a mount remains below it: a recursive delete through a leftover
 * bind would destroy a user's rootfs. Runs once the VM is gone, so no guest races it.
 */
export async function teardownShare(deps: ShareTeardownDeps, paths: SharedDirPaths): Promise<void> {
  const { root } = paths;
  if ((await lstat(root).catch(ignoreErrno("ENOENT"))) === undefined) return;
  for (let pass = 0; pass < 8; pass++) {
    const left = mountsUnder(parseMountInfo(await deps.readMountInfo()), root);
    if (left.length === 0) break;
    for (const m of left) {
      await deps.mounter.unmount(m).catch(async (e: unknown) => {
        // Propagation may already have removed a slave copy; a busy one (QEMU not gone yet) is detached.
        const still = mountsUnder(parseMountInfo(await deps.readMountInfo()), m);
        if (!still.includes(m)) return;
        await deps.mounter.unmount(m, { detach: true }).catch((detachFailed: unknown) => {
          throw withSuppressed(e, [detachFailed]);
        });
      });
    }
  }
  const left = mountsUnder(parseMountInfo(await deps.readMountInfo()), root);
  if (left.length > 0) {
    throw new KataError(Code.Internal, `cannot remove ${root}: still mounted: ${left.join(", ")}`);
  }
  await rm(root, { recursive: true, force: true });
}
