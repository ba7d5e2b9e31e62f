// The applier for planToolsDisk: copies the planned files into a staging tree and runs mkfs.erofs on it.
// Uncompressed (no -z): under TCG the guest's CPU is emulated, so decompressing would cost more than
// reading. `--all-root -T0 -U <uuid>` make the output depend on the planned files only (checked with
// erofs-utils 1.5: equal trees give equal bytes whatever their owners, mtimes and creation order).

import { chmod, copyFile, mkdir, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Code, KataError, isKataError } from "../base/errors.js";
import { runChecked, type ProcessRunner } from "../platform/process.js";
import type { DiskFile } from "./layout.js";

/** Where Debian's erofs-utils puts the tool. */
export const hostMkfsErofsPath = "/usr/bin/mkfs.erofs";

export function mkfsErofsMissing(cause?: unknown): KataError {
  return new KataError(
    Code.NotFound,
    `${hostMkfsErofsPath} is not installed (install the Debian package erofs-utils: apt-get install -y erofs-utils)`,
    cause === undefined ? {} : { cause },
  );
}

/** mkfs.erofs arguments; `uuid` fixes the volume UUID (see toolsDiskUuid). */
export function mkfsErofsArgs(outPath: string, treeDir: string, uuid: string): string[] {
  return ["--quiet", "--all-root", "-T0", `-U${uuid}`, outPath, treeDir];
}

/**
 * Writes an erofs image of `files` to `outPath` (replaced if present). `stagingDir` must not exist; it is
 * created and always removed. Throws NOT_FOUND without erofs-utils, INVALID_ARGUMENT for a path that
 * leaves the tree, INTERNAL when mkfs.erofs fails; file system errors pass through unwrapped (their
 * errno tells the caller "permission denied" apart).
 */
export async function writeErofsImage(
  deps: { readonly runner: ProcessRunner; readonly signal?: AbortSignal },
  outPath: string,
  stagingDir: string,
  files: readonly DiskFile[],
  uuid: string,
): Promise<{ readonly sizeBytes: number }> {
  try {
    await mkdir(stagingDir, { mode: 0o755 });
    const dirs = new Set<string>();
    for (const f of files) {
      if (!f.path.startsWith("/") || f.path.split("/").some((p) => p === "." || p === "..")) {
        throw new KataError(Code.InvalidArgument, `erofs file ${f.path} is not a normalized absolute path`);
      }
      const dest = join(stagingDir, f.path);
      for (let d = dirname(dest); d !== stagingDir && !dirs.has(d); d = dirname(d)) dirs.add(d);
      await mkdir(dirname(dest), { recursive: true });
      // A copy, not a hard link: chmod must not change the host's own files.
      await copyFile(f.source.sourcePath, dest);
      await chmod(dest, f.mode);
    }
    // Directory modes are recorded too, and mkdir's depend on the umask.
    for (const d of [stagingDir, ...dirs]) await chmod(d, 0o755);
    await runChecked(deps.runner, hostMkfsErofsPath, mkfsErofsArgs(outPath, stagingDir, uuid), {
      ...(deps.signal === undefined ? {} : { signal: deps.signal }),
    }).catch((e: unknown) => {
      throw isKataError(e, Code.NotFound) ? mkfsErofsMissing(e) : e;
    });
    return { sizeBytes: (await stat(outPath)).size };
  } finally {
    await rm(stagingDir, { recursive: true, force: true });
  }
}
