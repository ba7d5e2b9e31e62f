// The guest kernel from Debian's linux-image-amd64 (the -cloud flavour has no 9p): resolve the package,
// `apt-get download` it (never installed), `dpkg-deb -x` it, and cut the uncompressed ELF vmlinux out
// of the XZ bzImage (booting it via PVH skips ~2.7 s of XZ decompression under TCG).

import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { abortError } from "../base/async.js";
import { Code, KataError, errnoOf, invariant, isKataError, wrap } from "../base/errors.js";
import { describeExit, runChecked, type ProcessRunner } from "../platform/process.js";
import type { KernelPackage } from "./kernel-package.js";
import { indexModules, moduleDepends, moduleName, resolveLoadOrder } from "./modules.js";

interface Step {
  readonly runner: ProcessRunner;
  readonly signal?: AbortSignal;
  readonly progress: (line: string) => void;
}

/** The file `apt-get download` names a package ("linux-image-..._6.1.192-2_amd64.deb" has prefix "..._6.1.192-2_"). */
export function debFilePrefix(pkg: KernelPackage): string {
  return `${pkg.name}_${pkg.version.replaceAll(":", "%3a")}_`;
}

/** Offsets of the XZ stream magic (FD 37 7A 58 5A 00) in a bzImage. */
export function xzMagicOffsets(image: Uint8Array): number[] {
  const magic = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
  const buf = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  const offsets: number[] = [];
  for (let at = buf.indexOf(magic); at !== -1; at = buf.indexOf(magic, at + 1)) offsets.push(at);
  return offsets;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return false; // the answer, not a failure
    throw wrap(e, `stat ${path}`);
  }
}

function tempName(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
}

/** Renames `from` onto `to`; when another builder got there first (a directory), ours is dropped. */
async function publish(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (e) {
    const code = errnoOf(e);
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw wrap(e, `rename ${from} to ${to}`);
    await rm(from, { recursive: true, force: true }); // an identical tree is already in place
  }
}

async function findDeb(dir: string, pkg: KernelPackage): Promise<string | undefined> {
  const prefix = debFilePrefix(pkg);
  const names = await readdir(dir).catch((e: unknown) => {
    if (errnoOf(e) === "ENOENT") return [];
    throw wrap(e, `list ${dir}`);
  });
  const hit = names.find((n) => n.startsWith(prefix) && n.endsWith(".deb"));
  return hit === undefined ? undefined : join(dir, hit);
}

/** `<kernelDir>/<pkg>.deb`, downloaded unless present; download goes to a temp dir, then is renamed. */
async function ensureDeb(s: Step, kernelDir: string, pkg: KernelPackage): Promise<string> {
  const present = await findDeb(kernelDir, pkg);
  if (present !== undefined) return present;
  const tmp = tempName(join(kernelDir, "download"));
  await mkdir(tmp, { recursive: true });
  try {
    s.progress(`kernel: apt-get download ${pkg.name}=${pkg.version}`);
    // cwd is the target: apt-get download writes into the current directory. As root it warns that
    // the _apt user cannot write there and downloads unsandboxed; the file is still fetched.
    await runChecked(s.runner, "apt-get", ["download", `${pkg.name}=${pkg.version}`], {
      cwd: tmp,
      ...(s.signal === undefined ? {} : { signal: s.signal }),
    });
    const got = await findDeb(tmp, pkg);
    if (got === undefined) throw new KataError(Code.Internal, `apt-get download ${pkg.name}: no .deb in ${tmp}`);
    const dest = join(kernelDir, got.slice(tmp.length + 1));
    await rename(got, dest);
    s.progress(`kernel: downloaded ${dest} (${((await stat(dest)).size / 1e6).toFixed(1)} MB)`);
    return dest;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The version a tree was extracted from, recorded inside it so a published tree always has one. */
const treeStampName = ".kata-ts-version";

async function treeVersion(root: string): Promise<string | undefined> {
  const stamp = join(root, treeStampName);
  try {
    return (await readFile(stamp, "utf8")).trim();
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return undefined; // no tree yet
    throw wrap(e, `read ${stamp}`);
  }
}

/**
 * The extracted package tree `<cacheDir>/kernel/<pkg>/root`, downloading and extracting only when it is
 * absent or was extracted from another version. The tree is extracted aside and renamed into place,
 * so a tree that exists is complete.
 */
export async function ensureKernelTree(s: Step, cacheDir: string, pkg: KernelPackage): Promise<string> {
  const kernelDir = join(cacheDir, "kernel");
  const pkgDir = join(kernelDir, pkg.name);
  const root = join(pkgDir, "root");
  if ((await treeVersion(root)) === pkg.version) return root;

  await mkdir(pkgDir, { recursive: true });
  const deb = await ensureDeb(s, kernelDir, pkg);
  const tmp = tempName(root);
  s.progress(`kernel: dpkg-deb -x ${deb}`);
  try {
    await runChecked(s.runner, "dpkg-deb", ["-x", deb, tmp], s.signal === undefined ? {} : { signal: s.signal });
    await writeFile(join(tmp, treeStampName), `${pkg.version}\n`);
    const present = await treeVersion(root);
    if (present === pkg.version) return root; // a concurrent build published the same tree meanwhile
    if (present !== undefined || (await exists(root))) {
      // A tree of another version (or from an older builder): move it aside, with the vmlinux cut from it.
      const old = tempName(`${root}.old`);
      await rename(root, old);
      await rm(join(pkgDir, "vmlinux"), { force: true });
      await rm(join(pkgDir, "version"), { force: true }); // where the first builder kept its stamp
      await rm(old, { recursive: true, force: true });
    }
    await publish(tmp, root);
    return root;
  } catch (e) {
    throw wrap(e, `extract ${deb}`);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The kernel release, from the single directory under `<root>/lib/modules` ("6.1.0-56-amd64"). */
export async function kernelRelease(root: string): Promise<string> {
  const dir = join(root, "lib", "modules");
  const names = await readdir(dir).catch((e: unknown) => {
    throw wrap(e, `list ${dir}`);
  });
  const [release, ...rest] = names;
  if (release === undefined || rest.length > 0) {
    throw new KataError(
      Code.FailedPrecondition,
      `${dir} should hold exactly one kernel release, found [${names.join(", ")}]`,
    );
  }
  return release;
}

async function xzToFile(s: Step, payload: Uint8Array, outPath: string): Promise<void> {
  const out = await open(outPath, "w", 0o644);
  try {
    // --single-stream: stop at the end of the XZ stream and ignore the rest of the bzImage after it.
    const child = await s.runner.spawn("xz", ["-dc", "--single-stream"], { stdio: ["pipe", out.fd, "pipe"] });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-2000);
    });
    child.stdin?.on("error", () => {
      // EPIPE: xz stops reading at the end of the stream; its exit status tells whether that was fine.
    });
    child.stdin?.end(payload);
    const onAbort = (): void => {
      child.kill("SIGKILL");
    };
    s.signal?.addEventListener("abort", onAbort, { once: true });
    const status = await child.exited;
    s.signal?.removeEventListener("abort", onAbort);
    if (status.code !== 0) throw new KataError(Code.Internal, `xz -dc: ${describeExit(status)}: ${stderr.trim()}`);
  } finally {
    await out.close();
  }
}

/** `<pkgDir>/vmlinux`: the ELF kernel inside `<root>/boot/vmlinuz-<release>`, extracted once. */
export async function ensureVmlinux(s: Step, root: string, release: string): Promise<string> {
  const dest = join(root, "..", "vmlinux");
  if (await exists(dest)) return dest;
  const bzImagePath = join(root, "boot", `vmlinuz-${release}`);
  const image = await readFile(bzImagePath).catch((e: unknown) => {
    throw wrap(e, `read ${bzImagePath}`);
  });
  s.progress(`kernel: extracting vmlinux from ${bzImagePath}`);
  const tmp = tempName(dest);
  try {
    for (const at of xzMagicOffsets(image)) {
      // A magic match can be a false positive; a real stream decompresses to the ELF kernel.
      const ok = await xzToFile(s, image.subarray(at), tmp).then(
        () => true,
        (e: unknown) => {
          if (s.signal?.aborted === true) throw abortError(s.signal, `extract vmlinux from ${bzImagePath}`);
          if (isKataError(e, Code.NotFound)) throw e; // xz is not installed
          return false; // not a valid stream at this offset: try the next one
        },
      );
      const head = ok ? await readHead(tmp, 4) : Buffer.alloc(0);
      if (head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
        await rename(tmp, dest);
        s.progress(`kernel: vmlinux ${((await stat(dest)).size / 1e6).toFixed(1)} MB`);
        return dest;
      }
    }
  } finally {
    await rm(tmp, { force: true });
  }
  throw new KataError(Code.FailedPrecondition, `${bzImagePath} holds no XZ-compressed ELF kernel`);
}

async function readHead(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export interface KernelModuleFile {
  readonly name: string;
  readonly sourcePath: string;
  readonly sizeBytes: number;
}

/** The .ko files for `wanted` and their dependencies, in load order. Throws NOT_FOUND for a missing module. */
export async function collectModules(
  root: string,
  release: string,
  wanted: readonly string[],
): Promise<KernelModuleFile[]> {
  const base = join(root, "lib", "modules", release, "kernel");
  const files = await readdir(base, { recursive: true }).catch((e: unknown) => {
    throw wrap(e, `list ${base}`);
  });
  const index = indexModules(files);
  // resolveLoadOrder is synchronous, so read the .modinfo of every reachable module up front.
  const loaded = new Map<string, { depends: string[]; sizeBytes: number }>();
  const queue = wanted.map(moduleName);
  for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
    const rel = index.get(name);
    // Missing or compressed modules are reported by resolveLoadOrder through `dependsOf` below.
    if (rel === undefined || !rel.endsWith(".ko") || loaded.has(name)) continue;
    const path = join(base, rel);
    const bytes = await readFile(path).catch((e: unknown) => {
      throw wrap(e, `read ${path}`);
    });
    let depends: string[];
    try {
      depends = moduleDepends(bytes);
    } catch (e) {
      throw wrap(e, `read .modinfo of ${path}`);
    }
    loaded.set(name, { depends, sizeBytes: bytes.length });
    queue.push(...depends);
  }
  const dependsOf = (name: string): readonly string[] | undefined => {
    const rel = index.get(name);
    if (rel !== undefined && !rel.endsWith(".ko")) {
      // Debian 6.1 ships plain .ko files (checked); compressed ones would need xz/zstd before insmod.
      throw new KataError(
        Code.Unimplemented,
        `kernel module ${name} is compressed (${rel}); only plain .ko is supported`,
      );
    }
    return loaded.get(name)?.depends;
  };
  return resolveLoadOrder(wanted, dependsOf).map((name) => {
    const rel = index.get(name);
    const sizeBytes = loaded.get(name)?.sizeBytes;
    invariant(rel !== undefined && sizeBytes !== undefined, `module ${name} in the load order was read`);
    return { name, sourcePath: join(base, rel), sizeBytes };
  });
}
