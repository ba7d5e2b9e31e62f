// The guest's file trees as data: pure planners from resolved inputs (host paths, sizes, module order,
// applet names) to the initrd's cpio entry list and the tools disk's file list. The appliers are
// writeCpioFile and writeErofsImage.
//
// Why two trees: the kernel unpacks the whole initrd before /init runs (~14 ms per MB under TCG), while
// a disk is read on demand. So the initrd keeps what boot needs first and is small (busybox, modules,
// the agent bundle); node and crun, 87 MB, sit on a read-only erofs disk mounted at toolsMount, and the
// initrd holds symlinks to them at their usual paths.

import { Code, KataError } from "../base/errors.js";
import type { CpioEntry } from "./cpio.js";
import {
  agentPathInGuest,
  agentSnapshotEntryInGuest,
  agentSnapshotInGuest,
  agentStartScript,
  agentStartScriptInGuest,
  guestInittab,
  snapshotBuildScript,
  snapshotBuildScriptInGuest,
  toolsMountInGuest,
} from "./guest-init.js";

/** Guest paths other components rely on (the agent's launcher, the image-info reader). */
export const guestPaths = {
  init: "/init",
  inittab: "/etc/inittab",
  modulesOrder: "/etc/modules.order",
  modulesDir: "/lib/modules",
  busybox: "/bin/busybox",
  crun: "/usr/bin/crun",
  node: "/usr/bin/node",
  ttyHelper: "/usr/bin/kata-ts-tty",
  reseedHelper: "/usr/bin/kata-ts-reseed",
  sealedExec: "/usr/bin/kata-ts-sealed-exec",
  /** Where /init mounts the tools disk (read-only). */
  toolsMount: toolsMountInGuest,
  agent: agentPathInGuest,
  agentSnapshot: agentSnapshotInGuest,
  agentStartScript: agentStartScriptInGuest,
  agentSnapshotEntry: agentSnapshotEntryInGuest,
  snapshotBuildScript: snapshotBuildScriptInGuest,
  imageInfo: "/etc/kata-ts-image.json",
} as const;

/** What /etc/kata-ts-image.json holds; deterministic (no build time) so equal inputs give equal bytes. */
export interface ImageInfo {
  readonly kernelRelease: string;
  readonly kernelPackage: string;
  readonly inputsHash: string;
}

export interface HostFile {
  readonly sourcePath: string;
  readonly sizeBytes: number;
}

/**
 * How the agent starts (see guestInittab): the ESM bundle alone; its startup snapshot (the bundle stays
 * as the fallback); or, in the image builder's VM, the CommonJS bundle from which that VM builds the
 * snapshot.
 */
export type AgentLayout =
  | { readonly start: "bundle" }
  | { readonly start: "snapshot"; readonly snapshot: HostFile }
  | { readonly start: "build-snapshot"; readonly snapshotEntry: HostFile };

export interface LayoutInputs {
  readonly initScript: string;
  readonly imageInfo: ImageInfo;
  /** In load order. */
  readonly modules: readonly (HostFile & { readonly name: string })[];
  readonly busybox: HostFile;
  /** `busybox --list`; "busybox" itself is dropped here (a symlink would replace the binary). */
  readonly applets: readonly string[];
  readonly crun: HostFile;
  readonly node: HostFile;
  /** Shared libraries of crun and node at their host paths (also their guest paths). */
  readonly libraries: readonly (HostFile & { readonly guestPath: string })[];
  readonly agentBundle: HostFile;
  readonly agent: AgentLayout;
  /** The static pty helper (native/kata-ts-tty.c) for terminal containers; absent: no terminals. */
  readonly ttyHelper?: HostFile;
  /** The static CRNG reseed helper (native/kata-ts-reseed.c) for VM template clones; absent: no ReseedRandomDev. */
  readonly reseedHelper?: HostFile;
  /** The static launcher (native/kata-ts-sealed-exec.c) that runs crun from a sealed copy; absent: crun direct. */
  readonly sealedExec?: HostFile;
}

/** One file of the tools disk. `path` is its guest path; on the disk it is the same path under the root. */
export interface DiskFile {
  readonly path: string;
  readonly mode: number;
  readonly source: HostFile;
}

const baseDirs: Readonly<Record<string, number>> = {
  "/proc": 0o555,
  "/sys": 0o555,
  "/sys/fs": 0o755,
  "/sys/fs/cgroup": 0o755,
  "/dev": 0o755,
  "/run": 0o755,
  "/tmp": 0o1777,
  "/mnt": 0o755,
  "/root": 0o700,
  "/newroot": 0o755,
  "/etc": 0o755,
  "/var": 0o755,
};

/** Device nodes the kernel needs before devtmpfs: it opens /dev/console for /init's fds 0-2. */
const devices = [
  { path: "/dev/console", mode: 0o600, major: 5, minor: 1 },
  { path: "/dev/null", mode: 0o666, major: 1, minor: 3 },
] as const;

function text(s: string): { readonly kind: "bytes"; readonly data: Uint8Array } {
  return { kind: "bytes", data: Buffer.from(s, "utf8") };
}

function fromHost(f: HostFile): { readonly kind: "path"; readonly path: string; readonly sizeBytes: number } {
  return { kind: "path", path: f.sourcePath, sizeBytes: f.sizeBytes };
}

function parentsOf(path: string): string[] {
  const parts = path.split("/").filter((p) => p !== "");
  return parts.slice(0, -1).map((_, i) => `/${parts.slice(0, i + 1).join("/")}`);
}

/** The JSON written to /etc/kata-ts-image.json. */
export function imageInfoJson(info: ImageInfo): string {
  const { kernelRelease, kernelPackage, inputsHash } = info;
  return `${JSON.stringify({ kernelRelease, kernelPackage, inputsHash }, null, 2)}\n`;
}

/**
 * The files of the tools disk: node, crun and every shared library they load. Libraries go with them
 * (not into the initrd): only busybox, which is static, runs before the disk is mounted.
 * 0755 for libraries too: the kernel opens the dynamic loader (PT_INTERP) with exec permission.
 */
export function planToolsDisk(inputs: LayoutInputs): DiskFile[] {
  const files = new Map<string, DiskFile>();
  const add = (f: DiskFile): void => {
    if (!f.path.startsWith("/") || f.path.split("/").some((p) => p === "." || p === "..")) {
      throw new KataError(Code.InvalidArgument, `tools disk path ${f.path} is not a normalized absolute path`);
    }
    const prev = files.get(f.path);
    if (prev !== undefined && JSON.stringify(prev) !== JSON.stringify(f)) {
      throw new KataError(Code.InvalidArgument, `tools disk path ${f.path} is claimed twice with different contents`);
    }
    files.set(f.path, f);
  };
  add({ path: guestPaths.crun, mode: 0o755, source: inputs.crun });
  add({ path: guestPaths.node, mode: 0o755, source: inputs.node });
  if (inputs.ttyHelper !== undefined) add({ path: guestPaths.ttyHelper, mode: 0o755, source: inputs.ttyHelper });
  if (inputs.reseedHelper !== undefined) {
    add({ path: guestPaths.reseedHelper, mode: 0o755, source: inputs.reseedHelper });
  }
  if (inputs.sealedExec !== undefined) add({ path: guestPaths.sealedExec, mode: 0o755, source: inputs.sealedExec });
  for (const lib of inputs.libraries) {
    add({ path: lib.guestPath, mode: 0o755, source: { sourcePath: lib.sourcePath, sizeBytes: lib.sizeBytes } });
  }
  return [...files.values()];
}

/**
 * Every entry of the initrd, parent directories included. Throws INVALID_ARGUMENT for a bad applet
 * or module name, or when two inputs claim one guest path with different sources.
 */
export function planInitrd(inputs: LayoutInputs): CpioEntry[] {
  const entries = new Map<string, CpioEntry>();
  const add = (e: CpioEntry): void => {
    const prev = entries.get(e.path);
    if (prev !== undefined && JSON.stringify(prev) !== JSON.stringify(e)) {
      throw new KataError(Code.InvalidArgument, `initrd path ${e.path} is claimed twice with different contents`);
    }
    entries.set(e.path, e);
  };

  add({ kind: "file", path: guestPaths.init, mode: 0o755, source: text(inputs.initScript) });
  add({ kind: "file", path: guestPaths.inittab, mode: 0o644, source: text(guestInittab(inputs.agent.start)) });
  add({ kind: "file", path: guestPaths.imageInfo, mode: 0o644, source: text(imageInfoJson(inputs.imageInfo)) });

  for (const m of inputs.modules) {
    if (!/^[A-Za-z0-9_]+$/.test(m.name)) throw new KataError(Code.InvalidArgument, `bad kernel module name ${m.name}`);
    add({ kind: "file", path: `${guestPaths.modulesDir}/${m.name}.ko`, mode: 0o644, source: fromHost(m) });
  }
  const order = inputs.modules.map((m) => `${m.name}\n`).join("");
  add({ kind: "file", path: guestPaths.modulesOrder, mode: 0o644, source: text(order) });

  add({ kind: "file", path: guestPaths.busybox, mode: 0o755, source: fromHost(inputs.busybox) });
  for (const applet of inputs.applets) {
    if (applet === "busybox") continue;
    if (!/^[^/\0\s]+$/.test(applet) || applet === "." || applet === "..") {
      throw new KataError(Code.InvalidArgument, `bad busybox applet name ${JSON.stringify(applet)}`);
    }
    add({ kind: "symlink", path: `/bin/${applet}`, target: "busybox" });
  }
  add({ kind: "symlink", path: "/sbin/init", target: guestPaths.busybox });

  // Absolute targets: they resolve the same from any working directory and through the re-root.
  for (const f of planToolsDisk(inputs)) {
    add({ kind: "symlink", path: f.path, target: `${guestPaths.toolsMount}${f.path}` });
  }
  add({ kind: "dir", path: guestPaths.toolsMount, mode: 0o755 });
  add({ kind: "file", path: guestPaths.agent, mode: 0o644, source: fromHost(inputs.agentBundle) });
  const agent = inputs.agent;
  if (agent.start === "snapshot") {
    add({ kind: "file", path: guestPaths.agentSnapshot, mode: 0o644, source: fromHost(agent.snapshot) });
    add({ kind: "file", path: guestPaths.agentStartScript, mode: 0o755, source: text(agentStartScript) });
  } else if (agent.start === "build-snapshot") {
    add({ kind: "file", path: guestPaths.agentSnapshotEntry, mode: 0o644, source: fromHost(agent.snapshotEntry) });
    add({ kind: "file", path: guestPaths.snapshotBuildScript, mode: 0o755, source: text(snapshotBuildScript) });
  }

  for (const d of devices) add({ kind: "chardev", ...d });
  for (const [path, mode] of Object.entries(baseDirs)) add({ kind: "dir", path, mode });
  for (const path of [...entries.keys()].flatMap(parentsOf)) {
    if (!entries.has(path)) add({ kind: "dir", path, mode: baseDirs[path] ?? 0o755 });
  }
  for (const [path, e] of entries) {
    const clash = parentsOf(path).find((p) => entries.get(p)?.kind !== "dir");
    if (clash !== undefined)
      throw new KataError(Code.InvalidArgument, `initrd path ${e.path} is under non-directory ${clash}`);
  }
  return [...entries.values()];
}
