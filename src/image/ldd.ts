// The shared-library closure of a binary, read from `ldd` (which already walks the closure through the
// dynamic loader), so the initrd can carry the same files at the same absolute paths.

import { Code, KataError, wrap } from "../base/errors.js";
import { describeExit, type ProcessRunner } from "../platform/process.js";
import { isDynamicElf } from "./elf.js";

export interface LddResult {
  /** Absolute paths in the order ldd printed them, the dynamic loader included. */
  readonly paths: readonly string[];
  /** Sonames ldd reported as "not found". */
  readonly missing: readonly string[];
}

/**
 * Parses ldd's output. Lines look like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`,
 * `/lib64/ld-linux-x86-64.so.2 (0x...)` or `linux-vdso.so.1 (0x...)` (kernel-provided: no file).
 */
export function parseLdd(output: string): LddResult {
  const paths: string[] = [];
  const missing: string[] = [];
  for (const raw of output.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const arrow = /^(\S+)\s+=>\s+(.*)$/.exec(line);
    const target = (arrow?.[2] ?? line).replace(/\s*\(0x[0-9a-f]+\)$/i, "").trim();
    if (target === "not found") {
      missing.push(arrow?.[1] ?? line);
    } else if (target.startsWith("/") && !paths.includes(target)) {
      paths.push(target);
    }
  }
  return { paths, missing };
}

/**
 * The absolute paths of every shared library `binary` loads (empty for a static binary).
 * Throws FAILED_PRECONDITION when a library is missing on this host.
 */
export async function sharedLibraries(
  runner: ProcessRunner,
  binary: string,
  signal?: AbortSignal,
): Promise<readonly string[]> {
  // A static binary has no libraries; ldd says so only in words, and fails for it.
  const dynamic = await isDynamicElf(binary).catch((e: unknown) => {
    throw wrap(e, `read the ELF header of ${binary}`);
  });
  if (!dynamic) return [];
  const r = await runner.run("ldd", [binary], signal === undefined ? {} : { signal });
  if (r.code !== 0) {
    throw new KataError(Code.Internal, `ldd ${binary}: ${describeExit(r)}: ${r.stderr.trim()}`);
  }
  const parsed = parseLdd(r.stdout);
  if (parsed.missing.length > 0) {
    throw new KataError(
      Code.FailedPrecondition,
      `${binary} needs libraries missing on this host: ${parsed.missing.join(", ")}`,
    );
  }
  return parsed.paths;
}
