// `kata-ts install` applied: links on PATH and the containerd config, through a small file-system port.
// Every refusal happens before the first change (links are all checked before any is made; the
// config is merged and checked in memory), so a refused install changes nothing.

import { chmod, lstat, open, readFile, readlink, realpath, rename, rm, stat, symlink } from "node:fs/promises";
import path from "node:path";
import { Code, KataError, ignoreErrno, wrap } from "../../base/errors.js";
import {
  isKataTsLinkTarget,
  mergeContainerdConfig,
  planLinks,
  releaseWrapperDir,
  removeBlock,
  shimName,
  type LinkPlan,
  type RuntimeOptions,
} from "./install-plan.js";

export type PathKind =
  | { readonly kind: "missing" }
  | { readonly kind: "symlink"; readonly target: string }
  | { readonly kind: "file" }
  | { readonly kind: "dir" }
  | { readonly kind: "other" };

/** The file system as install needs it. */
export interface InstallFs {
  /** What is at `p`; a symlink is not followed unless `follow`. */
  inspect(p: string, opts?: { follow?: boolean }): Promise<PathKind>;
  /** The file's text, or undefined when it does not exist. */
  readText(p: string): Promise<string | undefined>;
  /** Replaces `p` at once (a temp file renamed over it), keeping its mode; `exclusive` refuses an existing `p`. */
  writeText(p: string, text: string, opts?: { exclusive?: boolean }): Promise<void>;
  /** Makes `p` a symlink to `target`, replacing what is there at once. */
  link(p: string, target: string): Promise<void>;
  remove(p: string): Promise<void>;
}

export interface InstallOptions extends RuntimeOptions {
  readonly installRoot: string;
  readonly binDir: string;
  readonly containerdConfig: string;
  /** Merge the entries into containerdConfig. */
  readonly write: boolean;
  /** Replace files at the links' paths that are not kata-ts links, and a backup that is not ours. */
  readonly force: boolean;
}

export interface InstallReport {
  /** What was done, one line each. */
  readonly actions: readonly string[];
  readonly warnings: readonly string[];
}

export function backupPath(containerdConfig: string): string {
  return `${containerdConfig}.kata-ts.bak`;
}

function describeKind(k: PathKind): string {
  return k.kind === "symlink" ? `a link to ${k.target}` : `a ${k.kind === "other" ? "special file" : k.kind}`;
}

/** Checks every link before any is made: what is at each link's path now. */
async function checkLinks(fs: InstallFs, links: readonly LinkPlan[], force: boolean): Promise<PathKind[]> {
  const found: PathKind[] = [];
  for (const l of links) {
    if ((await fs.inspect(l.target)).kind === "missing") {
      throw new KataError(Code.FailedPrecondition, `${l.target} does not exist: build kata-ts first (npm run build)`);
    }
    const k = await fs.inspect(l.path);
    if (k.kind === "dir") throw new KataError(Code.FailedPrecondition, `${l.path} is a directory`);
    const ours = k.kind === "symlink" && (k.target === l.target || isKataTsLinkTarget(l.name, k.target));
    if (k.kind !== "missing" && !ours && !force) {
      throw new KataError(
        Code.FailedPrecondition,
        `${l.path} is ${describeKind(k)}, not a kata-ts link: remove it, or use --force to replace it`,
      );
    }
    found.push(k);
  }
  return found;
}

async function makeLinks(fs: InstallFs, links: readonly LinkPlan[], found: readonly PathKind[]): Promise<string[]> {
  const actions: string[] = [];
  for (const [i, l] of links.entries()) {
    const k = found[i] ?? { kind: "missing" };
    if (k.kind === "symlink" && k.target === l.target) {
      actions.push(`${l.path} already links to ${l.target}`);
      continue;
    }
    await fs.link(l.path, l.target);
    actions.push(
      k.kind === "missing"
        ? `linked ${l.path} -> ${l.target}`
        : `replaced ${describeKind(k)} at ${l.path} by a link to ${l.target}`,
    );
  }
  return actions;
}

type BackupStep = "write" | "overwrite" | "keep";

/**
 * What to do with `<file>.kata-ts.bak` before `file` (whose text is `current`) is replaced. A backup of
 * the file as it was before kata-ts, or as it is now, is ours; anything else may be the only copy of
 * something the user kept.
 */
async function backupStep(fs: InstallFs, file: string, current: string, force: boolean): Promise<BackupStep> {
  const old = await fs.readText(backupPath(file));
  if (old === undefined) return "write";
  if (old === current || old === removeBlock(file, current).text) return "keep";
  if (force) return "overwrite";
  throw new KataError(
    Code.FailedPrecondition,
    `${backupPath(file)} exists and is not a copy of ${file}: move it away, or use --force to overwrite it`,
  );
}

/** Where systemd looks for programs when a unit sets no PATH, as containerd.service does. */
const systemdDefaultPath = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/**
 * Links the binaries into binDir and, with `write`, merges kata-ts's runtime into containerd's config.
 * Every check (links, config, backup) runs before the first change, so a refusal changes nothing.
 */
export async function install(fs: InstallFs, opts: InstallOptions): Promise<InstallReport> {
  if ((await fs.inspect(opts.binDir, { follow: true })).kind !== "dir") {
    throw new KataError(Code.FailedPrecondition, `--bin-dir ${opts.binDir} is not a directory`);
  }
  const file = opts.containerdConfig;
  const current = opts.write ? await fs.readText(file) : undefined;
  const plan = opts.write ? mergeContainerdConfig(file, current, opts) : undefined;
  const backup =
    plan?.changed === true && current !== undefined ? await backupStep(fs, file, current, opts.force) : "keep";
  const hasWrappers = (await fs.inspect(path.join(opts.installRoot, releaseWrapperDir, shimName))).kind === "file";
  const links = planLinks(opts.installRoot, opts.binDir, hasWrappers);
  const found = await checkLinks(fs, links, opts.force);

  const warnings: string[] = [...(plan?.warnings ?? [])];
  if (opts.configPath !== undefined && (await fs.inspect(opts.configPath)).kind === "missing") {
    warnings.push(`--config-path ${opts.configPath} does not exist: the shim will fail to start until it does`);
  }
  if (!hasWrappers) {
    const nodes = await Promise.all(systemdDefaultPath.map((d) => fs.inspect(path.join(d, "node"), { follow: true })));
    if (!nodes.some((k) => k.kind === "file")) {
      warnings.push(
        `no node in ${systemdDefaultPath.join(":")}: the linked scripts (#!/usr/bin/env node) need one on containerd's PATH`,
      );
    }
  }

  const actions = await makeLinks(fs, links, found);
  if (plan === undefined) return { actions, warnings };
  const where = `${file} (config version ${plan.version}, CRI plugin "${plan.pluginId}")`;
  if (!plan.changed) return { actions: [...actions, `${where} already has kata-ts's runtime entries`], warnings };
  if (current !== undefined && backup !== "keep") {
    await fs.writeText(backupPath(file), current, { exclusive: backup === "write" });
    actions.push(
      backup === "write"
        ? `saved ${file} as ${backupPath(file)}`
        : `overwrote ${backupPath(file)} with ${file} (--force)`,
    );
  }
  await fs.writeText(file, plan.text);
  actions.push(`${current === undefined ? "created" : "updated"} ${where} with kata-ts's runtime`);
  return { actions, warnings };
}

/** Removes kata-ts's links from binDir and its block from containerd's config. Running it twice is fine. */
export async function uninstall(
  fs: InstallFs,
  opts: Pick<InstallOptions, "installRoot" | "binDir" | "containerdConfig">,
): Promise<InstallReport> {
  const file = opts.containerdConfig;
  const text = await fs.readText(file);
  // A broken block is refused before anything is removed.
  const removal = text === undefined ? undefined : removeBlock(file, text);
  const actions: string[] = [];
  const warnings: string[] = [];
  for (const l of planLinks(opts.installRoot, opts.binDir, false)) {
    const k = await fs.inspect(l.path);
    if (k.kind === "missing") continue;
    if (k.kind === "symlink" && (k.target === l.target || isKataTsLinkTarget(l.name, k.target))) {
      await fs.remove(l.path);
      actions.push(`removed ${l.path} (a link to ${k.target})`);
    } else {
      warnings.push(`left ${l.path} alone: it is ${describeKind(k)}, not a kata-ts link`);
    }
  }
  if (removal?.removed === true) {
    if (removal.deleteFile) {
      await fs.remove(file);
      actions.push(`removed ${file} (kata-ts install had created it)`);
    } else {
      await fs.writeText(file, removal.text);
      actions.push(`removed kata-ts's block from ${file}`);
    }
    const backup = backupPath(file);
    const old = await fs.readText(backup);
    if (old !== undefined && old === removal.text) {
      await fs.remove(backup);
      actions.push(`removed ${backup} (the same as ${file} now)`);
    } else if (old !== undefined) {
      warnings.push(`kept ${backup}: it differs from ${file} as it is now`);
    }
  }
  if (actions.length === 0) actions.push("nothing of kata-ts's to remove");
  return { actions, warnings };
}

/** The real file system. */
export class NodeInstallFs implements InstallFs {
  async inspect(p: string, opts: { follow?: boolean } = {}): Promise<PathKind> {
    const s = await (opts.follow === true ? stat(p) : lstat(p)).catch(ignoreErrno("ENOENT", "ENOTDIR"));
    if (s === undefined) return { kind: "missing" };
    if (s.isSymbolicLink()) return { kind: "symlink", target: await readlink(p) };
    if (s.isFile()) return { kind: "file" };
    if (s.isDirectory()) return { kind: "dir" };
    return { kind: "other" };
  }

  readText(p: string): Promise<string | undefined> {
    return readFile(p, "utf8").catch(ignoreErrno("ENOENT"));
  }

  async writeText(p: string, text: string, opts: { exclusive?: boolean } = {}): Promise<void> {
    if (opts.exclusive === true) {
      const fh = await open(p, "wx", 0o600).catch((e: unknown) => {
        throw wrap(e, `create ${p}`);
      });
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return;
    }
    // A config that is a symlink stays one: the file it points to is replaced.
    const real = (await realpath(p).catch(ignoreErrno("ENOENT"))) ?? p;
    const mode = (await stat(real).catch(ignoreErrno("ENOENT")))?.mode ?? 0o644;
    const tmp = `${real}.kata-ts.tmp-${process.pid}`;
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await chmod(tmp, mode & 0o7777);
      await rename(tmp, real);
    } catch (e) {
      await rm(tmp, { force: true });
      throw wrap(e, `replace ${real}`);
    }
  }

  async link(p: string, target: string): Promise<void> {
    const tmp = `${p}.kata-ts.tmp-${process.pid}`;
    await rm(tmp, { force: true });
    await symlink(target, tmp);
    try {
      await rename(tmp, p);
    } catch (e) {
      await rm(tmp, { force: true });
      throw wrap(e, `link ${p}`);
    }
  }

  async remove(p: string): Promise<void> {
    await rm(p, { force: true });
  }
}
