// Builds the guest kernel (ELF vmlinux), initrd (uncompressed newc cpio: gzip boots slower under TCG) and
// tools disk (read-only erofs: node, crun, their libraries; see layout.ts) into an output directory,
// rebuilding only when the hash of the inputs changes. Given a hypervisor, it also boots the new image
// once to build the agent's startup snapshot (agent-snapshot.ts), which goes into the initrd.

import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, stat, writeFile, realpath } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { abortError } from "../base/async.js";
import { Code, KataError, errnoOf, invariant, wrap } from "../base/errors.js";
import type { Hypervisor } from "../hypervisor/hypervisor.js";
import type { ProcessRunner } from "../platform/process.js";
import { buildAgentSnapshot, removeSnapshotWork } from "./agent-snapshot.js";
import { writeCpioFile } from "./cpio-writer.js";
import { hashFiles } from "./file-hash.js";
import { agentStartScript, guestInitScript, guestInittab, snapshotBuildScript } from "./guest-init.js";
import { busyboxApplets, ensureStrippedNode, findAgentSnapshotEntry, inspectHost } from "./host-inputs.js";
import { resolveKernelPackageCached } from "./kernel-package.js";
import { collectModules, ensureKernelTree, ensureVmlinux, kernelRelease } from "./kernel.js";
import { trimKernel } from "./kernel-trim.js";
import { writeErofsImage } from "./erofs.js";
import { planInitrd, planToolsDisk, type AgentLayout, type LayoutInputs } from "./layout.js";
import {
  computeInputsHash,
  imageFileNames,
  imageFormatVersion,
  initrdFileName,
  kernelFileName,
  manifestFileName,
  parseManifest,
  renderManifest,
  toolsDiskFileName,
  toolsDiskUuid,
  type AgentStartKind,
  type ImageManifest,
  type SourceHash,
} from "./manifest.js";

export { defaultImageDir } from "./manifest.js";
export const defaultCacheDir = "/var/cache/kata-ts";

/**
 * Modules insmod'ed by /init (dependencies are added): virtio transports, agent port, 9p, disk, NIC,
 * overlay, erofs for the tools disk. crc32c_generic comes before erofs: erofs needs libcrc32c, whose init
 * asks the crypto API for "crc32c" and fails unless an implementation is loaded (the guest has no modprobe
 * aliases). virtio_pci is useless on microvm but kept for q35: skipping it there saved no measurable time.
 */
export const guestModules = [
  "virtio_pci",
  "virtio_mmio",
  "virtio_console",
  "9pnet_virtio",
  "9p",
  "virtio_blk",
  "virtio_net",
  "overlay",
  "crc32c_generic",
  "erofs",
  "virtio_balloon",
] as const;

export interface GuestImage {
  readonly kernelPath: string;
  readonly initrdPath: string;
  /** The read-only erofs disk the initrd's node and crun live on; attach it read-only (toolsDiskSerial). */
  readonly toolsDiskPath: string;
  readonly kernelRelease: string;
  readonly inputsHash: string;
  /** Whether the agent starts from a V8 startup snapshot (falling back to its bundle) or its bundle. */
  readonly agentStart: AgentStartKind;
}

export interface ImageBuildOptions {
  /** Holds vmlinux, initrd.img, tools.erofs and manifest.json. */
  readonly outputDir: string;
  /** Long-lived downloads: the kernel package and tree (`kernel/`), the stripped node (`node/`). */
  readonly cacheDir: string;
  readonly agentBundlePath: string;
  /** The static pty helper built by `npm run build` (dist/native/kata-ts-tty); without it, no terminals. */
  readonly ttyHelperPath?: string;
  /** The static reseed helper (dist/native/kata-ts-reseed); without it, ReseedRandomDev is UNIMPLEMENTED. */
  readonly reseedHelperPath?: string;
  /** The static crun launcher built by `npm run build` (dist/native/kata-ts-sealed-exec); without it, crun runs direct. */
  readonly sealedExecPath?: string;
  /** The agent's CommonJS bundle: with a hypervisor, the image gets a startup snapshot built from it. */
  readonly agentSnapshotEntryPath?: string;
  /** Rebuild even when the manifest says the outputs are current. */
  readonly force?: boolean;
  readonly signal?: AbortSignal;
  /** One human-readable line per long step (the CLI prints them to stderr). */
  readonly progress?: (line: string) => void;
}

export type ImageBuildResult = GuestImage & { readonly rebuilt: boolean; readonly timingsMs: Record<string, number> };

async function readManifest(outputDir: string): Promise<ImageManifest | undefined> {
  const path = join(outputDir, manifestFileName);
  try {
    return parseManifest(await readFile(path, "utf8"));
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return undefined; // never built
    throw wrap(e, `read ${path}`);
  }
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return undefined; // absent: the image is incomplete
    throw wrap(e, `stat ${path}`);
  }
}

function imageOf(outputDir: string, m: ImageManifest): GuestImage {
  return {
    kernelPath: join(outputDir, kernelFileName),
    initrdPath: join(outputDir, initrdFileName),
    toolsDiskPath: join(outputDir, toolsDiskFileName),
    kernelRelease: m.kernelRelease,
    inputsHash: m.inputsHash,
    agentStart: m.agentStart,
  };
}

async function isComplete(outputDir: string, m: ImageManifest): Promise<boolean> {
  for (const name of imageFileNames) {
    const recorded = m.files.find((f) => f.name === name);
    if (recorded === undefined || (await sizeOf(join(outputDir, name))) !== recorded.sizeBytes) return false;
  }
  return true;
}

/** The image recorded in `<outputDir>/manifest.json`, or undefined when absent, unreadable or incomplete. */
export async function readGuestImage(outputDir: string): Promise<GuestImage | undefined> {
  const m = await readManifest(outputDir);
  return m !== undefined && (await isComplete(outputDir, m)) ? imageOf(outputDir, m) : undefined;
}

function tempName(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
}

/** The kernel as VMs load it: `trimKernel`'s copy of the extracted vmlinux (20 MiB less for each VM to hold). */
async function writeTrimmedKernel(from: string, to: string, progress: (line: string) => void): Promise<void> {
  const elf = await readFile(from).catch((e: unknown) => {
    throw wrap(e, `read ${from}`);
  });
  const { bytes, segments } = trimKernel(elf, from);
  const cut = segments.reduce((n, x) => n + x.fileBytesBefore - x.fileBytesAfter, 0);
  progress(
    `kernel: ${(elf.length / 1e6).toFixed(1)} MB, ${(cut / 1e6).toFixed(1)} MB of zero-filled segment tails left to the loader`,
  );
  await writeFile(to, bytes, { mode: 0o644 });
}

/**
 * Builds (or confirms) the guest image. Throws NOT_FOUND for a missing tool or package (the message
 * names what to install), FAILED_PRECONDITION when apt has no kernel or a directory is not writable,
 * CANCELLED when `signal` aborts.
 */
export interface ImageBuildDeps {
  readonly runner: ProcessRunner;
  /** Boots the snapshot build VM; without it the agent starts from its bundle. */
  readonly hypervisor?: Hypervisor;
}

export async function buildGuestImage(deps: ImageBuildDeps, opts: ImageBuildOptions): Promise<ImageBuildResult> {
  try {
    return await build(deps, opts);
  } catch (e) {
    const op = `build guest image in ${opts.outputDir}`;
    const errno = errnoOf(e);
    if (errno === "EACCES" || errno === "EPERM" || errno === "EROFS") {
      const hint = "run as root, or pass --output and --cache directories you can write";
      throw new KataError(Code.FailedPrecondition, `${op}: permission denied (${hint})`, { cause: e });
    }
    throw wrap(e, op);
  }
}

async function build(deps: ImageBuildDeps, opts: ImageBuildOptions): Promise<ImageBuildResult> {
  const progress = opts.progress ?? ((): void => undefined);
  const step = { runner: deps.runner, progress, ...(opts.signal === undefined ? {} : { signal: opts.signal }) };
  const timingsMs: Record<string, number> = {};
  const started = performance.now();
  const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    if (opts.signal?.aborted === true) throw abortError(opts.signal, `build guest image: ${name}`);
    const t = performance.now();
    try {
      return await fn();
    } finally {
      timingsMs[name] = Math.round(performance.now() - t);
    }
  };

  const pkg = await timed("resolveKernel", () => resolveKernelPackageCached(deps.runner, opts.cacheDir, opts.signal));
  const host = await timed("inspectHost", () => inspectHost(step, process.execPath, opts.agentBundlePath));
  const snapshotEntry =
    deps.hypervisor === undefined || opts.agentSnapshotEntryPath === undefined
      ? undefined
      : await findAgentSnapshotEntry(opts.agentSnapshotEntryPath);
  const agentStart: AgentStartKind = snapshotEntry === undefined ? "bundle" : "snapshot";
  const ttyHelper = opts.ttyHelperPath === undefined ? undefined : await optionalFile(opts.ttyHelperPath);
  const reseedHelper = opts.reseedHelperPath === undefined ? undefined : await optionalFile(opts.reseedHelperPath);
  const sealedExec = opts.sealedExecPath === undefined ? undefined : await optionalFile(opts.sealedExecPath);
  const previous = await readManifest(opts.outputDir);
  const sourcePaths = [
    host.busybox,
    host.crun,
    host.node,
    host.agentBundle,
    host.mkfsErofs,
    ...host.libraries.values(),
    ...(snapshotEntry === undefined ? [] : [snapshotEntry]),
    ...(ttyHelper === undefined ? [] : [ttyHelper]),
    ...(reseedHelper === undefined ? [] : [reseedHelper]),
    ...(sealedExec === undefined ? [] : [sealedExec]),
  ];
  const hashes = await timed("hashInputs", () => hashFiles(sourcePaths, previous?.sourceHashes ?? {}));
  const hashOf = (path: string): SourceHash => {
    const h = hashes[path];
    invariant(h !== undefined, `${path} was hashed`);
    return h;
  };
  const sha = (path: string): string => hashOf(path).sha256;
  const size = (path: string): number => hashOf(path).sizeBytes;
  const libraryHashes = [...host.libraries].map(([guest, real]): [string, string] => [`lib:${guest}`, sha(real)]);
  const inputsHash = computeInputsHash({
    kernelPackage: pkg.name,
    kernelVersion: pkg.version,
    modules: guestModules,
    files: {
      busybox: sha(host.busybox),
      crun: sha(host.crun),
      node: sha(host.node),
      agent: sha(host.agentBundle),
      "mkfs.erofs": sha(host.mkfsErofs),
      ...(snapshotEntry === undefined ? {} : { "agent-snapshot-entry": sha(snapshotEntry) }),
      ...(ttyHelper === undefined ? {} : { "kata-ts-tty": sha(ttyHelper) }),
      ...(reseedHelper === undefined ? {} : { "kata-ts-reseed": sha(reseedHelper) }),
      ...(sealedExec === undefined ? {} : { "kata-ts-sealed-exec": sha(sealedExec) }),
      ...Object.fromEntries(libraryHashes),
    },
    scripts: {
      init: guestInitScript,
      inittab: guestInittab(agentStart),
      // The kernel file is written by this build, not copied: a change to how says "rebuild".
      kernel: "trimKernel v1: PT_LOAD zero tails to the loader, no section headers",
      ...(agentStart === "snapshot" ? { agentStart: agentStartScript, snapshotBuild: snapshotBuildScript } : {}),
    },
    agentStart,
  });
  const finish = (m: ImageManifest, rebuilt: boolean): ImageBuildResult => {
    timingsMs["total"] = Math.round(performance.now() - started);
    return { ...imageOf(opts.outputDir, m), rebuilt, timingsMs };
  };
  if (opts.force !== true && previous?.inputsHash === inputsHash && (await isComplete(opts.outputDir, previous))) {
    progress(`image: up to date (${inputsHash.slice(0, 12)}) in ${opts.outputDir}`);
    return finish(previous, false);
  }

  const root = await timed("kernelTree", () => ensureKernelTree(step, opts.cacheDir, pkg));
  const release = await kernelRelease(root);
  const vmlinux = await timed("vmlinux", () => ensureVmlinux(step, root, release));
  const modules = await timed("modules", () => collectModules(root, release, guestModules));
  const node = await timed("stripNode", () => ensureStrippedNode(step, opts.cacheDir, host.node, sha(host.node)));
  const nodeSize = node === host.node ? size(node) : (await stat(node)).size;
  const applets = await busyboxApplets(step, host.busybox);
  const layout = (agent: AgentLayout): LayoutInputs => ({
    initScript: guestInitScript,
    imageInfo: { kernelRelease: release, kernelPackage: pkg.name, inputsHash },
    modules,
    busybox: { sourcePath: host.busybox, sizeBytes: size(host.busybox) },
    applets,
    crun: { sourcePath: host.crun, sizeBytes: size(host.crun) },
    node: { sourcePath: node, sizeBytes: nodeSize },
    libraries: [...host.libraries].map(([guestPath, real]) => ({ guestPath, sourcePath: real, sizeBytes: size(real) })),
    agentBundle: { sourcePath: host.agentBundle, sizeBytes: size(host.agentBundle) },
    agent,
    ...(ttyHelper === undefined ? {} : { ttyHelper: { sourcePath: ttyHelper, sizeBytes: size(ttyHelper) } }),
    ...(reseedHelper === undefined
      ? {}
      : { reseedHelper: { sourcePath: reseedHelper, sizeBytes: size(reseedHelper) } }),
    ...(sealedExec === undefined ? {} : { sealedExec: { sourcePath: sealedExec, sizeBytes: size(sealedExec) } }),
  });
  const diskFiles = planToolsDisk(layout({ start: "bundle" }));
  progress(`modules: ${modules.map((m) => m.name).join(" ")}`);

  await mkdir(opts.outputDir, { recursive: true });
  const kernelPath = join(opts.outputDir, kernelFileName);
  const initrdPath = join(opts.outputDir, initrdFileName);
  const diskPath = join(opts.outputDir, toolsDiskFileName);
  const manifestPath = join(opts.outputDir, manifestFileName);
  const [kernelTmp, initrdTmp, diskTmp] = [tempName(kernelPath), tempName(initrdPath), tempName(diskPath)];
  const manifestTmp = tempName(manifestPath);
  const snapshotWork = tempName(join(opts.outputDir, ".agent-snapshot"));
  const writeInitrd = (agent: AgentLayout): Promise<{ sizeBytes: number }> =>
    writeCpioFile(initrdTmp, planInitrd(layout(agent)), opts.signal === undefined ? {} : { signal: opts.signal });
  try {
    const disk = await timed("toolsDisk", () =>
      writeErofsImage(step, diskTmp, `${diskTmp}.d`, diskFiles, toolsDiskUuid(inputsHash)),
    );
    await timed("kernel", () => writeTrimmedKernel(vmlinux, kernelTmp, progress));
    let agent: AgentLayout = { start: "bundle" };
    if (deps.hypervisor !== undefined && snapshotEntry !== undefined) {
      const { hypervisor } = deps;
      const entry = { sourcePath: snapshotEntry, sizeBytes: size(snapshotEntry) };
      progress("agent snapshot: building it in a VM of the new image (~10 s under TCG)");
      await timed("snapshotInitrd", () => writeInitrd({ start: "build-snapshot", snapshotEntry: entry }));
      const blob = await timed("agentSnapshot", () =>
        buildAgentSnapshot(hypervisor, {
          kernelPath: kernelTmp,
          initrdPath: initrdTmp,
          toolsDiskPath: diskTmp,
          workDir: snapshotWork,
          ...(opts.signal === undefined ? {} : { signal: opts.signal }),
        }),
      );
      agent = { start: "snapshot", snapshot: { sourcePath: blob, sizeBytes: (await stat(blob)).size } };
    }
    const initrd = await timed("initrd", () => writeInitrd(agent));
    const manifest: ImageManifest = {
      formatVersion: imageFormatVersion,
      inputsHash,
      kernelRelease: release,
      kernelPackage: pkg.name,
      kernelVersion: pkg.version,
      agentStart,
      files: [
        { name: kernelFileName, sizeBytes: (await stat(kernelTmp)).size },
        { name: initrdFileName, sizeBytes: initrd.sizeBytes },
        { name: toolsDiskFileName, sizeBytes: disk.sizeBytes },
      ],
      sourceHashes: hashes,
    };
    await writeFile(manifestTmp, renderManifest(manifest));
    // Readers trust files only through the manifest: drop it first, publish the files, then the new one.
    await rm(manifestPath, { force: true });
    await rename(kernelTmp, kernelPath);
    await rename(initrdTmp, initrdPath);
    await rename(diskTmp, diskPath);
    await rename(manifestTmp, manifestPath);
    const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
    progress(
      `image: built ${initrdPath} (${mb(initrd.sizeBytes)}, agent from its ${agentStart}), ` +
        `${diskPath} (${mb(disk.sizeBytes)}) and ${kernelPath}`,
    );
    return finish(manifest, true);
  } finally {
    await Promise.all([kernelTmp, initrdTmp, diskTmp, manifestTmp].map((p) => rm(p, { force: true })));
    await removeSnapshotWork(snapshotWork);
  }
}

/** A file the build may go without (the pty helper when gcc was missing): its real path, or undefined. */
async function optionalFile(p: string): Promise<string | undefined> {
  try {
    const real = await realpath(p);
    return (await stat(real)).isFile() ? real : undefined;
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return undefined;
    throw wrap(e, `resolve ${p}`);
  }
}
