// The host side of a sandbox's shared filesystem (CVE-2020-2026): the host bind-mounts container
// rootfs and volumes under a host-only `mounts/` directory, and the hypervisor exports `shared/`, a
// read-only bind of `mounts/`. The guest can write inside a bound rootfs but can never create an entry
// (a symlink, say) that the host would later follow.
//
// `/` is a private mount on hosts without systemd, so a bind made under `mounts/` after `shared/` was
// set up would not appear in `shared/` (a Kata 1.x failure). We make `mounts/` a shared mount of its
// own and `shared/` its slave: new binds propagate one way, host to guest view.

import { lstat, mkdir, readFile, rm, rmdir, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { Code, KataError, ignoreErrno, withSuppressed, wrap } from "../base/errors.js";
import { CleanupStack } from "../base/cleanup.js";
import type { Mounter } from "../platform/mount.js";
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

export interface SharedDirDeps {
  readonly mounter: Mounter;
  readonly readMountInfo: () => Promise<string>;
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
    const { mounter } = this.#deps;
    const { root, mounts, shared } = this.paths;
    const undo = new CleanupStack();
    try {
      await mkdir(root, { recursive: true, mode: 0o700 });
      undo.defer(`remove ${root}`, () => rm(root, { recursive: true, force: true }));
      await mkdir(mounts, { mode: 0o700 });
      await mkdir(shared, { mode: 0o700 });
      await mounter.bind(mounts, mounts);
      undo.defer(`unmount ${mounts}`, () => mounter.unmount(mounts));
      await mounter.setPropagation(mounts, "shared");
      await mounter.bind(mounts, shared);
      undo.defer(`unmount ${shared}`, () => mounter.unmount(shared));
      await mounter.setPropagation(shared, "slave");
      await mounter.remountReadonly(shared);
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
   * Binds `source` (a directory) at mounts/<relative>. A read-only bind is made read-only on the host
   * too (CVE-2020-28914), on both copies: a remount does not propagate, and the copy the guest sees is
   * the one under shared/.
   */
  async bindDir(source: string, relative: string, readonly: boolean): Promise<string> {
    const target = this.hostPath(relative);
    const created = await mkdir(target, { recursive: true, mode: 0o755 });
    await this.#bind(source, relative, readonly, async () => {
      if (created !== undefined) await rmdir(target).catch(ignoreErrno("ENOENT"));
    });
    return target;
  }

  /** Binds `source` (a regular file) at mounts/<relative>, over an empty file made for it; read-only as bindDir. */
  async bindFile(source: string, relative: string, readonly: boolean): Promise<string> {
    const target = this.hostPath(relative);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    // "a" creates the file or keeps an existing one; nothing under mounts/ is guest-made (CVE-2020-2026).
    await writeFile(target, "", { flag: "a", mode: 0o644 });
    await this.#bind(source, relative, readonly, () => unlink(target).catch(ignoreErrno("ENOENT")));
    return target;
  }

  async #bind(source: string, relative: string, readonly: boolean, removeTarget: () => Promise<void>): Promise<void> {
    const { mounter } = this.#deps;
    const target = this.hostPath(relative);
    try {
      await mounter.bind(source, target);
    } catch (e) {
      await removeTarget();
      throw wrap(e, `bind ${source} at ${target}`);
    }
    if (!readonly) return;
    try {
      await mounter.remountReadonly(target);
      await mounter.remountReadonly(path.join(this.paths.shared, relative));
    } catch (e) {
      await mounter.unmount(target);
      await removeTarget();
      throw wrap(e, `make ${target} read-only`);
    }
  }

  /**
   * Unmounts what bindDir or bindFile mounted and removes its target; the target lives under host-only
   * mounts/, so no guest symlink is followed.
   */
  async unbind(relative: string): Promise<void> {
    const target = this.hostPath(relative);
    const st = await lstat(target).catch(ignoreErrno("ENOENT"));
    if (st === undefined) return;
    if (!st.isDirectory() && !st.isFile()) {
      throw new KataError(Code.FailedPrecondition, `refusing to unmount ${target}: not a directory or regular file`);
    }
    try {
      await this.#deps.mounter.unmount(target);
    } catch (e) {
      // Busy: the VM's 9p server still holds files of it (a guest that stopped answering never let go).
      // Detached, it leaves the host's view now and is freed when QEMU closes them; the rest of the
      // mount table must not wait for a guest.
      await this.#deps.mounter.unmount(target, { detach: true }).catch((detachFailed: unknown) => {
        throw withSuppressed(e, [detachFailed]);
      });
    }
    if (st.isDirectory()) await rmdir(target).catch(ignoreErrno("ENOENT"));
    else await unlink(target).catch(ignoreErrno("ENOENT"));
  }

  /**
   * Unmounts everything under the sandbox's share root and removes it. Never removes files while a
   * mount remains below it: a recursive delete through a leftover bind would destroy a user's rootfs.
   */
  async teardown(): Promise<void> {
    const { root } = this.paths;
    if ((await lstat(root).catch(ignoreErrno("ENOENT"))) === undefined) return;
    for (let pass = 0; pass < 8; pass++) {
      const left = mountsUnder(parseMountInfo(await this.#deps.readMountInfo()), root);
      if (left.length === 0) break;
      for (const m of left) {
        await this.#deps.mounter.unmount(m).catch(async (e: unknown) => {
          // Propagation may already have removed a slave copy; anything else is a real failure.
          const still = mountsUnder(parseMountInfo(await this.#deps.readMountInfo()), m);
          if (still.includes(m)) throw e;
        });
      }
    }
    const left = mountsUnder(parseMountInfo(await this.#deps.readMountInfo()), root);
    if (left.length > 0) {
      throw new KataError(Code.Internal, `cannot remove ${root}: still mounted: ${left.join(", ")}`);
    }
    await rm(root, { recursive: true, force: true });
  }
}
