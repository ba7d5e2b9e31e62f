// State that must outlive the per-sandbox service (for `list`, `state` of a dead service, `delete
// --force` after a crash): one directory per sandbox under <root>/sbs/, written atomically, and the
// container-to-sandbox ID mapping under <root>/containers-mapping/<cid>/<sid> (Kata's layout).

import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat } from "node:fs/promises";
import { createHash } from "node:crypto";
import path from "node:path";
import { Code, KataError, codeOf, errnoOf, ignoreErrno } from "../base/errors.js";
import { checkId } from "../base/ids.js";

import type { PersistedCgroup } from "./pod-cgroup.js";
import type { ContainerStatus } from "./status.js";

export type { ContainerStatus } from "./status.js";

export interface PersistedContainer {
  readonly id: string;
  readonly bundle: string;
  /** The bundle's rootfs, absolute (runc's `state` prints it); absent in states of older builds. */
  readonly rootfs?: string;
  readonly type: "sandbox" | "container";
  status: ContainerStatus;
  readonly createdAt: string;
  readonly annotations: Readonly<Record<string, string>>;
  exitStatus?: number;
  exitedAt?: string;
  /** Processes of the container the guest's out-of-memory killer killed (0 or absent: none). */
  oomKills?: number;
}

export interface PersistedSandbox {
  readonly version: 1;
  readonly id: string;
  /** The service process that holds the VM. */
  readonly servicePid: number;
  readonly socket: string;
  readonly createdAt: string;
  /** links: the taps made for the VM in that namespace, for teardown after a service that died. */
  netns?: {
    readonly path: string;
    readonly created: boolean;
    readonly links?: readonly { readonly veth: string; readonly tap: string }[];
  };
  vmPid?: number;
  /** The sandbox's host cgroup (sandbox_cgroup_only): what stale cleanup removes. */
  cgroup?: PersistedCgroup;
  containers: PersistedContainer[];
}

/** A state file larger than this is not ours (a few KiB per container). */
const maxStateBytes = 4 << 20;

let saveCounter = 0;

/** The directory of a sandbox's VM (sockets, console log, pid file) under --root. */
export function vmDirOf(root: string, sandboxId: string): string {
  return path.join(root, "vm", checkId("sandbox id", sandboxId));
}

/** The OCI CLI's default --root, and the containerd shim's unless KATA_TS_ROOT says otherwise. */
export const defaultRunDir = "/run/kata-ts";

/**
 * A short tag of a --root for names that are host-wide (network namespaces): empty for the default root,
 * so its names stay `kata-ts-<id>`; 8 hex digits of the resolved path's hash otherwise.
 */
export function runDirScope(root: string): string {
  const resolved = path.resolve(root);
  if (resolved === defaultRunDir) return "";
  return createHash("sha256").update(resolved).digest("hex").slice(0, 8);
}

export class StateStore {
  readonly root: string;
  /** Saves of one sandbox run one after another, so the last state written is the last one asked. */
  readonly #saving = new Map<string, Promise<void>>();

  constructor(root: string) {
    this.root = root;
  }

  sandboxDir(sandboxId: string): string {
    return path.join(this.root, "sbs", checkId("sandbox id", sandboxId));
  }

  socketPath(sandboxId: string): string {
    return path.join(this.sandboxDir(sandboxId), "shim.sock");
  }

  save(s: PersistedSandbox): Promise<void> {
    const text = JSON.stringify(s, null, 2) + "\n";
    const prev = this.#saving.get(s.id) ?? Promise.resolve();
    // Each save waits for the one before, whatever its outcome (its own caller got that).
    const next = prev.then(
      () => this.#write(s.id, text),
      (_earlier: unknown) => this.#write(s.id, text),
    );
    this.#saving.set(s.id, next);
    const forget = (): void => {
      if (this.#saving.get(s.id) === next) this.#saving.delete(s.id);
    };
    // The caller gets next's rejection; this branch only tidies up.
    next.then(forget, forget);
    return next;
  }

  async #write(sandboxId: string, text: string): Promise<void> {
    const dir = this.sandboxDir(sandboxId);
    const file = path.join(dir, "state.json");
    const tmp = `${file}.tmp-${process.pid}-${++saveCounter}`;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const fh = await open(tmp, "w", 0o600);
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
    } catch (e) {
      await rm(tmp, { force: true });
      // A full state directory is the usual cause, and the one the caller can act on: name it.
      const full = errnoOf(e) === "ENOSPC" || errnoOf(e) === "EDQUOT";
      throw new KataError(
        full ? Code.ResourceExhausted : codeOf(e),
        `save state ${file}${full ? ` (no space left in ${this.root})` : ""}`,
        { cause: e },
      );
    }
  }

  async load(sandboxId: string): Promise<PersistedSandbox | undefined> {
    const file = path.join(this.sandboxDir(sandboxId), "state.json");
    let text: string;
    try {
      const st = await stat(file);
      if (st.size > maxStateBytes)
        throw new KataError(Code.Internal, `${file}: ${st.size} bytes, more than ${maxStateBytes}`);
      text = await readFile(file, "utf8");
    } catch (e) {
      if (errnoOf(e) === "ENOENT") return undefined;
      throw e;
    }
    return parseState(text, file, sandboxId);
  }

  async sandboxIds(): Promise<string[]> {
    const entries = await readdir(path.join(this.root, "sbs")).catch(ignoreErrno("ENOENT"));
    return (entries ?? []).filter((e) => /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.test(e)).sort();
  }

  async removeSandbox(sandboxId: string): Promise<void> {
    await rm(this.sandboxDir(sandboxId), { recursive: true, force: true });
  }

  #mappingDir(containerId: string): string {
    return path.join(this.root, "containers-mapping", checkId("container id", containerId));
  }

  async addMapping(containerId: string, sandboxId: string): Promise<void> {
    checkId("sandbox id", sandboxId);
    const dir = this.#mappingDir(containerId);
    try {
      await mkdir(path.dirname(dir), { recursive: true, mode: 0o700 });
      await mkdir(dir, { mode: 0o700 });
    } catch (e) {
      if (errnoOf(e) === "EEXIST") throw new KataError(Code.AlreadyExists, `container ${containerId} already exists`);
      throw e;
    }
    const fh = await open(path.join(dir, checkId("sandbox id", sandboxId)), "wx", 0o600);
    await fh.close();
  }

  /** The sandbox of `containerId`, or undefined when there is no mapping. */
  async sandboxOf(containerId: string): Promise<string | undefined> {
    const dir = this.#mappingDir(containerId);
    const entries = await readdir(dir).catch(ignoreErrno("ENOENT"));
    if (entries === undefined || entries.length === 0) return undefined;
    if (entries.length > 1) throw new KataError(Code.Internal, `too many files (${entries.length}) in ${dir}`);
    // CAST: length checked above.
    return checkId("sandbox id", entries[0] as string);
  }

  async removeMapping(containerId: string): Promise<void> {
    const dir = this.#mappingDir(containerId);
    for (const e of (await readdir(dir).catch(ignoreErrno("ENOENT"))) ?? []) {
      await rm(path.join(dir, e), { force: true });
    }
    await rmdir(dir).catch(ignoreErrno("ENOENT"));
  }
}

function parseState(text: string, file: string, sandboxId: string): PersistedSandbox {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new KataError(Code.Internal, `${file}: not valid JSON`, { cause: e });
  }
  const ok =
    typeof v === "object" &&
    v !== null &&
    "version" in v &&
    v.version === 1 &&
    "id" in v &&
    v.id === sandboxId &&
    "servicePid" in v &&
    typeof v.servicePid === "number" &&
    "containers" in v &&
    Array.isArray(v.containers);
  if (!ok) throw new KataError(Code.Internal, `${file}: not a kata-ts sandbox state (version 1, id ${sandboxId})`);
  // CAST: shape checked above; the file is written only by StateStore.save.
  const s = v as PersistedSandbox;
  for (const c of s.containers as unknown[]) {
    const id: unknown = typeof c === "object" && c !== null && "id" in c ? c.id : undefined;
    if (typeof id !== "string") throw new KataError(Code.Internal, `${file}: a container entry has no id`);
    checkId("container id", id);
  }
  // Teardown passes these to ip and tc: interface names only (IFNAMSIZ, no "/" or spaces).
  for (const l of (s.netns?.links ?? []) as unknown[]) {
    const names = typeof l === "object" && l !== null && "veth" in l && "tap" in l ? [l.veth, l.tap] : [];
    if (names.length !== 2 || !names.every((n) => typeof n === "string" && /^[A-Za-z0-9_.@-]{1,15}$/.test(n))) {
      throw new KataError(Code.Internal, `${file}: netns.links has an entry that is not a pair of interface names`);
    }
  }
  if (s.cgroup !== undefined) checkCgroup(s.cgroup, file);
  return s;
}

/** Stale cleanup removes the directories named here: absolute, clean paths only, and a known version. */
function checkCgroup(c: unknown, file: string): void {
  const isPath = (p: unknown): boolean =>
    typeof p === "string" &&
    p.length <= 4096 &&
    p.startsWith("/") &&
    !p.includes("\0") &&
    p
      .split("/")
      .slice(1)
      .every((part) => part !== "" && part !== "." && part !== "..");
  const paths = (v: unknown): boolean => Array.isArray(v) && v.every(isPath);
  const ok =
    typeof c === "object" &&
    c !== null &&
    "version" in c &&
    (c.version === 1 || c.version === 2) &&
    "leaves" in c &&
    paths(c.leaves) &&
    "created" in c &&
    paths(c.created) &&
    "homes" in c &&
    paths(c.homes);
  if (!ok) throw new KataError(Code.Internal, `${file}: cgroup is not a version and lists of clean absolute paths`);
}
