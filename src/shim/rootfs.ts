// containerd gives a task its root file system as mounts (the snapshot: an overlay for the overlayfs
// snapshotter, a bind for the native one), to be mounted at <bundle>/rootfs before the container is made;
// kata-ts then shares that directory into the VM as it does for any bundle. Block-device snapshots (ext4,
// xfs from devmapper) are refused: they would have to be hotplugged into the VM, which kata-ts does not do.

import { mkdir } from "node:fs/promises";
import path from "node:path";
import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, wrap } from "../base/errors.js";
import { errField, type Logger } from "../base/log.js";
import type { MountRequest, Mounter } from "../platform/mount.js";

/** containerd.types.Mount as the task API carries it. */
export interface ContainerdMount {
  readonly type: string;
  readonly source: string;
  readonly target: string;
  readonly options: readonly string[];
}

/** The rootfs types accepted; anything else is refused UNIMPLEMENTED, naming rootfs[i].type. */
export const rootfsTypes: readonly string[] = ["overlay", "bind"];

/** The directory containerd's rootfs mounts go on. */
export function rootfsDir(bundle: string): string {
  return path.join(bundle, "rootfs");
}

/**
 * The mount(8) calls that stack `mounts` on <bundle>/rootfs, in order (as containerd's mount.All does).
 * Checks everything before anything is mounted; errors name the field (`rootfs[0].type`).
 */
export function planRootfsMounts(bundle: string, mounts: readonly ContainerdMount[]): MountRequest[] {
  if (!path.isAbsolute(bundle)) {
    throw new KataError(Code.InvalidArgument, `bundle: ${JSON.stringify(bundle)} is not an absolute path`);
  }
  const target = rootfsDir(bundle);
  return mounts.map((m, i) => {
    const field = `rootfs[${i}]`;
    if (m.target !== "") {
      throw new KataError(
        Code.InvalidArgument,
        `${field}.target: ${JSON.stringify(m.target)}: must be empty (a task's rootfs mounts go on the bundle's rootfs)`,
      );
    }
    m.options.forEach((o, j) => {
      // mount(8) gets the options joined by commas: one holding a comma would become two.
      if (o.includes(",") || o === "") {
        throw new KataError(Code.InvalidArgument, `${field}.options[${j}]: ${JSON.stringify(o)} is not one option`);
      }
    });
    if (m.type === "overlay") {
      if (!m.options.some((o) => o.startsWith("lowerdir="))) {
        throw new KataError(Code.InvalidArgument, `${field}.options: an overlay mount needs lowerdir=`);
      }
      return { source: m.source === "" ? "overlay" : m.source, target, fstype: "overlay", options: [...m.options] };
    }
    if (m.type === "bind") {
      if (!path.isAbsolute(m.source)) {
        throw new KataError(
          Code.InvalidArgument,
          `${field}.source: ${JSON.stringify(m.source)} is not an absolute path`,
        );
      }
      // mount(8) reads bind/rbind from -o; the native snapshotter sends "rbind" already.
      const bind = m.options.some((o) => o === "bind" || o === "rbind");
      return { source: m.source, target, options: bind ? [...m.options] : ["bind", ...m.options] };
    }
    throw new KataError(
      Code.Unimplemented,
      `${field}.type: ${JSON.stringify(m.type)} is not supported (accepted: ${rootfsTypes.join(", ")}; ` +
        `use the overlayfs or native snapshotter)`,
    );
  });
}

/** containerd's rootfs mounted on a bundle; unmount() takes every layer of it off again. */
export interface MountedRootfs {
  readonly target: string;
  unmount(signal?: AbortSignal): Promise<void>;
}

/**
 * Mounts `mounts` on <bundle>/rootfs (made if missing). On failure nothing it mounted is left. With no
 * mounts, there is nothing to do: the bundle's rootfs is used as it is.
 */
export async function mountRootfs(
  deps: { mounter: Mounter; logger: Logger },
  bundle: string,
  mounts: readonly ContainerdMount[],
  signal?: AbortSignal,
): Promise<MountedRootfs | undefined> {
  if (mounts.length === 0) return undefined;
  const plan = planRootfsMounts(bundle, mounts);
  const target = rootfsDir(bundle);
  await mkdir(target, { recursive: true });
  const cleanup = new CleanupStack();
  const unmount = (sig?: AbortSignal): Promise<void> => unmountLayer(deps, target, sig);
  try {
    for (const [i, m] of plan.entries()) {
      await deps.mounter.mount(m, signal).catch((e: unknown) => {
        throw wrap(e, `rootfs[${i}]: mount ${m.fstype ?? "bind"} on ${target}`);
      });
      cleanup.defer(`unmount rootfs[${i}] from ${target}`, () => unmount());
    }
  } catch (e) {
    await cleanup.unwind(e);
  }
  const layers = plan.length;
  return {
    target,
    async unmount(sig?: AbortSignal): Promise<void> {
      for (let i = 0; i < layers; i++) await unmount(sig);
    },
  };
}

/**
 * Takes the top mount off `target`. One the kernel finds busy (a process still in it on the host) is
 * detached instead, so the delete that asked is not failed by a straggler; that is logged.
 */
async function unmountLayer(
  deps: { mounter: Mounter; logger: Logger },
  target: string,
  signal?: AbortSignal,
): Promise<void> {
  const sig = signal === undefined ? {} : { signal };
  try {
    await deps.mounter.unmount(target, sig);
  } catch (e) {
    deps.logger.warn("unmount of the rootfs failed; detaching it", { target, err: errField(e) });
    await deps.mounter.unmount(target, { detach: true, ...sig });
  }
}
