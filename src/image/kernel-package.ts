// Which Debian kernel package the guest uses: linux-image-amd64 resolved to its versioned package
// (linux-image-6.1.0-NN-amd64) and candidate version. apt-cache takes ~1 s per call here (no
// pkgcache.bin), so the answer is cached until apt's lists or pinning change.

import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, readdir, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Code, KataError, errnoOf, wrap } from "../base/errors.js";
import { runChecked, type ProcessRunner } from "../platform/process.js";

export const kernelMetaPackage = "linux-image-amd64";

export interface KernelPackage {
  readonly name: string;
  readonly version: string;
}

/** apt's inputs to a candidate version: the package lists (rewritten by `apt-get update`) and pinning. */
export const aptStateDirs = ["/var/lib/apt/lists", "/etc/apt/preferences.d"] as const;

/** The versioned image package in `apt-cache depends linux-image-amd64` ("linux-image-6.1.0-56-amd64"). */
export function parseAptDepends(output: string): string | undefined {
  return /^\s*\|?Depends:\s*(linux-image-\d\S*)\s*$/m.exec(output)?.[1];
}

/** The candidate version in `apt-cache policy PKG`, undefined when there is none. */
export function parseAptPolicyCandidate(output: string): string | undefined {
  const v = /^\s*Candidate:\s*(\S+)\s*$/m.exec(output)?.[1];
  return v === undefined || v === "(none)" ? undefined : v;
}

const aptHint = "check `apt-cache policy linux-image-amd64`; run `apt-get update` if the lists are missing";

/** Asks apt (two apt-cache calls). Throws FAILED_PRECONDITION when apt knows no installable kernel. */
export async function resolveKernelPackage(runner: ProcessRunner, signal?: AbortSignal): Promise<KernelPackage> {
  const opts = signal === undefined ? {} : { signal };
  const deps = await runChecked(runner, "apt-cache", ["depends", kernelMetaPackage], opts);
  const name = parseAptDepends(deps.stdout);
  if (name === undefined) {
    throw new KataError(
      Code.FailedPrecondition,
      `resolve kernel: ${kernelMetaPackage} depends on no linux-image package (${aptHint})`,
    );
  }
  const policy = await runChecked(runner, "apt-cache", ["policy", name], opts);
  const version = parseAptPolicyCandidate(policy.stdout);
  if (version === undefined) {
    throw new KataError(Code.FailedPrecondition, `resolve kernel: ${name} has no candidate version (${aptHint})`);
  }
  return { name, version };
}

/** A hash of the names, sizes and mtimes of the files in `dirs` (absent dirs count as absent). */
export async function dirsFingerprint(dirs: readonly string[]): Promise<string> {
  const h = createHash("sha256");
  for (const dir of dirs) {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (e) {
      if (errnoOf(e) !== "ENOENT") throw wrap(e, `list ${dir}`);
      h.update(`${dir} absent\n`); // no pinning at all is a state too
      continue;
    }
    for (const name of names) {
      const st = await stat(join(dir, name));
      if (st.isFile()) h.update(`${dir}/${name} ${st.size} ${st.mtimeMs}\n`);
    }
  }
  return h.digest("hex");
}

function parseCached(text: string): (KernelPackage & { fingerprint: string }) | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined; // a torn or foreign file: resolve again
  }
  if (typeof v !== "object" || v === null || !("fingerprint" in v && "name" in v && "version" in v)) return undefined;
  const { fingerprint, name, version } = v;
  if (typeof fingerprint !== "string" || typeof name !== "string" || typeof version !== "string") return undefined;
  return { fingerprint, name, version };
}

/** resolveKernelPackage, cached in `<cacheDir>/kernel/resolved.json` while apt's state is unchanged. */
export async function resolveKernelPackageCached(
  runner: ProcessRunner,
  cacheDir: string,
  signal?: AbortSignal,
): Promise<KernelPackage> {
  const dir = join(cacheDir, "kernel");
  const file = join(dir, "resolved.json");
  const fingerprint = await dirsFingerprint(aptStateDirs);
  const cached = await readFile(file, "utf8").then(parseCached, (e: unknown) => {
    if (errnoOf(e) === "ENOENT") return undefined; // first run
    throw wrap(e, `read ${file}`);
  });
  if (cached?.fingerprint === fingerprint) return { name: cached.name, version: cached.version };
  const pkg = await resolveKernelPackage(runner, signal);
  await mkdir(dir, { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  await writeFile(tmp, `${JSON.stringify({ fingerprint, ...pkg })}\n`);
  await rename(tmp, file);
  return pkg;
}
