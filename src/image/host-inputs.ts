// The host files the image carries (busybox-static, crun, node, their shared libraries, the agent
// bundle) and the tools that build it (mkfs.erofs), located and checked up front so a missing package
// is reported before any long step.

import { randomBytes } from "node:crypto";
import { mkdir, realpath, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Code, KataError, describeError, errnoOf, isKataError, wrap } from "../base/errors.js";
import { notInstalled, runChecked, type ProcessRunner } from "../platform/process.js";
import { hostMkfsErofsPath, mkfsErofsMissing } from "./erofs.js";
import { sharedLibraries } from "./ldd.js";

/** Where Debian's busybox-static and crun put their binaries. */
export const hostBusyboxPath = "/bin/busybox";
export const hostCrunPath = "/usr/bin/crun";

export interface HostInputs {
  /** Real (symlink-free) paths of the files whose content goes into the initrd. */
  readonly busybox: string;
  readonly crun: string;
  readonly node: string;
  readonly agentBundle: string;
  /** Builds the tools disk; hashed like an input (another version may lay the disk out differently). */
  readonly mkfsErofs: string;
  /** guest path (as ldd printed it) -> real host path, for crun's and node's libraries. */
  readonly libraries: ReadonlyMap<string, string>;
}

interface Step {
  readonly runner: ProcessRunner;
  readonly signal?: AbortSignal;
  readonly progress: (line: string) => void;
}

async function realFile(path: string, missing: () => KataError): Promise<string> {
  let real: string;
  try {
    real = await realpath(path);
  } catch (e) {
    if (errnoOf(e) === "ENOENT") throw missing();
    throw wrap(e, `resolve ${path}`);
  }
  const st = await stat(real).catch((e: unknown) => {
    throw wrap(e, `stat ${real}`);
  });
  if (!st.isFile()) throw missing();
  return real;
}

/**
 * Finds every host input. Throws NOT_FOUND naming the package to install (busybox-static, crun, erofs-utils) or the
 * command to run (the agent bundle comes from `npm run build`), FAILED_PRECONDITION for a dynamic busybox.
 */
export async function inspectHost(s: Step, nodePath: string, agentBundlePath: string): Promise<HostInputs> {
  const busybox = await realFile(hostBusyboxPath, () => notInstalled("busybox"));
  const crun = await realFile(hostCrunPath, () => notInstalled("crun"));
  const node = await realFile(nodePath, () => new KataError(Code.NotFound, `node binary ${nodePath} not found`));
  const agentBundle = await realFile(
    agentBundlePath,
    () => new KataError(Code.NotFound, `guest agent bundle ${agentBundlePath} not found (run npm run build)`),
  );
  const mkfsErofs = await realFile(hostMkfsErofsPath, () => mkfsErofsMissing());
  if ((await sharedLibraries(s.runner, busybox, s.signal)).length > 0) {
    throw new KataError(
      Code.FailedPrecondition,
      `${hostBusyboxPath} is dynamically linked (install the Debian package busybox-static: apt-get install -y busybox-static)`,
    );
  }
  const libraries = new Map<string, string>();
  for (const bin of [crun, node]) {
    for (const lib of await sharedLibraries(s.runner, bin, s.signal)) {
      // The content is the symlink's target; the guest path is the name the loader asks for.
      if (libraries.has(lib)) continue;
      libraries.set(lib, await realFile(lib, () => new KataError(Code.NotFound, `${lib} (from ldd ${bin}) not found`)));
    }
  }
  return { busybox, crun, node, agentBundle, mkfsErofs, libraries };
}

/** The agent's CommonJS bundle (the snapshot entry), checked like the ESM one. Throws NOT_FOUND. */
export function findAgentSnapshotEntry(path: string): Promise<string> {
  return realFile(path, () => new KataError(Code.NotFound, `guest agent bundle ${path} not found (run npm run build)`));
}

/** `busybox --list`: every applet name, "busybox" included (the planner drops it). */
export async function busyboxApplets(s: Step, busybox: string): Promise<string[]> {
  const r = await runChecked(s.runner, busybox, ["--list"], s.signal === undefined ? {} : { signal: s.signal });
  return r.stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
}

async function versionOf(s: Step, nodeBinary: string): Promise<string> {
  const r = await runChecked(s.runner, nodeBinary, ["-e", "process.stdout.write(process.version)"], {
    ...(s.signal === undefined ? {} : { signal: s.signal }),
  });
  return r.stdout;
}

/**
 * A copy of `node` without its symbol table (`strip --strip-unneeded`: 99 -> 86 MB here; the debug-only
 * strip saves just 2.5 MB), cached at `<cacheDir>/node/<sha256>/node` and checked to still run.
 * The host binary is never modified. Without binutils' strip the original is used.
 */
export async function ensureStrippedNode(s: Step, cacheDir: string, node: string, sha256: string): Promise<string> {
  const dir = join(cacheDir, "node", sha256);
  const dest = join(dir, "node");
  try {
    if ((await stat(dest)).isFile()) return dest;
  } catch (e) {
    if (errnoOf(e) !== "ENOENT") throw wrap(e, `stat ${dest}`); // ENOENT: not stripped yet
  }
  await mkdir(dir, { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  s.progress(`node: strip --strip-unneeded ${node}`);
  try {
    await runChecked(s.runner, "strip", ["--strip-unneeded", "-o", tmp, node], {
      ...(s.signal === undefined ? {} : { signal: s.signal }),
    });
    const [want, got] = [await versionOf(s, node), await versionOf(s, tmp)];
    if (want !== got) throw new KataError(Code.Internal, `stripped node reports ${got}, the original ${want}`);
    await rename(tmp, dest);
    s.progress(
      `node: stripped ${((await stat(node)).size / 1e6).toFixed(1)} -> ${((await stat(dest)).size / 1e6).toFixed(1)} MB`,
    );
    return dest;
  } catch (e) {
    await rm(tmp, { force: true });
    if (isKataError(e, Code.NotFound)) {
      s.progress(`node: ${describeError(e)}; using the unstripped binary (install binutils to shrink it)`);
      return node;
    }
    throw wrap(e, `strip ${node}`);
  }
}
