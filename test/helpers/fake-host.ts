// Host fakes for component tests. FakeMounter keeps a mount table instead of mounting: directories and
// files stay real (targets must exist, as for mount(8)), and readMountInfo()/readProcMounts() serve the
// table in the kernel's formats, so code that reads the mount table to tear down (SharedDir) runs
// unchanged. It models what SharedDir relies on: one-way propagation from a shared mount to its slaves
// (and back on unmount), "not mounted" and "target is busy" failures. FakeNetns records namespaces
// and touches nothing.

import { lstat, mkdir, readdir, rm, rmdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { abortError } from "../../src/base/async.js";
import { Code, KataError, errnoOf, ignoreErrno } from "../../src/base/errors.js";
import type { CleanupStack } from "../../src/base/cleanup.js";
import type { InternetworkingModel } from "../../src/config/types.js";
import type { NetnsPort } from "../../src/network/netns.js";
import { noPodNetwork, type NetworkLink, type PodNetwork, type PodNetworkPort } from "../../src/sandbox/pod-network.js";
import { netnsPathOf } from "../../src/network/netns.js";
import type { MountRequest, Mounter, Propagation } from "../../src/platform/mount.js";
import type { RunResult } from "../../src/platform/process.js";
import { bindEach, type ShareBind, type ShareBinder, type ShareDir } from "../../src/platform/share-binder.js";

export type MountOp = "mount" | "bind" | "remountReadonly" | "setPropagation" | "unmount";

export interface FakeMount {
  readonly id: number;
  readonly parentId: number;
  readonly source: string;
  readonly target: string;
  readonly fstype: string;
  readonly options: readonly string[];
  readonly: boolean;
  propagation: "private" | "shared" | "slave";
  /** shared:N */
  peerGroup: number | undefined;
  /** master:N */
  master: number | undefined;
  /** Set on a copy made by propagation: the id of the mount it copies. */
  readonly copyOf: number | undefined;
}

/** The host's "/" in the table: what every path is under when nothing else is mounted there. */
const rootMountId = 1;

function escapePath(p: string): string {
  return p.replace(/[\\ \t\n]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`);
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith("/") ? dir : dir + "/");
}

export class FakeMounter implements Mounter {
  /** Every call, in order, also those that failed. */
  readonly calls: { readonly op: MountOp; readonly target: string; readonly source?: string }[] = [];
  /** Returns an error to make that call fail before it changes anything. */
  failOn: ((op: MountOp, target: string) => Error | undefined) | undefined;
  #mounts: FakeMount[] = [];
  #nextId = rootMountId + 1;
  #nextGroup = 1;

  /** Mounts in the table now (the host's "/" not included), in mount order. */
  mounts(): readonly FakeMount[] {
    return this.#mounts;
  }

  /** Mount points in the table now, in mount order. */
  mounted(): string[] {
    return this.#mounts.map((m) => m.target);
  }

  /** The table as /proc/self/mountinfo shows it. */
  readMountInfo = (): Promise<string> => {
    const lines = [`${rootMountId} 0 0:1 / / rw,relatime - ext4 /dev/root rw`];
    for (const m of this.#mounts) {
      const opt = [
        ...(m.peerGroup === undefined ? [] : [`shared:${m.peerGroup}`]),
        ...(m.master === undefined ? [] : [`master:${m.master}`]),
      ];
      const fields = [m.id, m.parentId, `0:${m.id}`, "/", escapePath(m.target), m.readonly ? "ro" : "rw", ...opt];
      lines.push(`${fields.join(" ")} - ${m.fstype} ${escapePath(m.source)} ${["rw", ...m.options].join(",")}`);
    }
    return Promise.resolve(lines.join("\n") + "\n");
  };

  /** The table as /proc/mounts shows it. */
  readProcMounts = (): Promise<string> => {
    const lines = ["/dev/root / ext4 rw,relatime 0 0"];
    for (const m of this.#mounts) {
      const opts = [m.readonly ? "ro" : "rw", ...m.options].join(",");
      lines.push(`${escapePath(m.source)} ${escapePath(m.target)} ${m.fstype} ${opts} 0 0`);
    }
    return Promise.resolve(lines.join("\n") + "\n");
  };

  async mount(m: MountRequest, signal?: AbortSignal): Promise<void> {
    this.#enter("mount", m.target, m.source);
    if (signal?.aborted === true) throw abortError(signal, `mount ${m.target}`);
    await mustExist(m.target, "mount point");
    this.#add({ source: m.source, target: m.target, fstype: m.fstype ?? "none", options: m.options ?? [] });
  }

  async bind(source: string, target: string): Promise<void> {
    this.#enter("bind", target, source);
    await mustExist(source, "bind source");
    await mustExist(target, "mount point");
    // A bind of a shared mount's tree joins its peer group, as the kernel does.
    const from = this.#top(source, true);
    const group = from?.propagation === "shared" ? from.peerGroup : undefined;
    this.#add({ source, target, fstype: "none", options: ["bind"] }, group);
  }

  remountReadonly(target: string): Promise<void> {
    return settle(() => {
      this.#enter("remountReadonly", target);
      this.#at(target, "remount").readonly = true;
    });
  }

  setPropagation(target: string, kind: Propagation): Promise<void> {
    return settle(() => {
      this.#propagation(target, kind);
    });
  }

  unmount(target: string, opts: { detach?: boolean } = {}): Promise<void> {
    return settle(() => {
      this.#unmount(target, opts.detach === true);
    });
  }

  #propagation(target: string, kind: Propagation): void {
    this.#enter("setPropagation", target);
    const m = this.#at(target, `make-${kind}`);
    if (kind === "shared") {
      m.peerGroup ??= this.#nextGroup++;
      m.propagation = "shared";
    } else if (kind === "slave") {
      m.master = m.propagation === "shared" ? m.peerGroup : m.master;
      m.peerGroup = undefined;
      m.propagation = m.master === undefined ? "private" : "slave";
    } else {
      m.peerGroup = undefined;
      m.master = undefined;
      m.propagation = "private";
    }
  }

  #unmount(target: string, detach: boolean): void {
    this.#enter("unmount", target);
    const m = this.#at(target, "umount");
    const below = this.#mounts.filter((x) => x !== m && isUnder(x.target, target) && x.id > m.id);
    if (below.length > 0 && !detach) {
      throw new KataError(Code.Internal, `umount ${target}: exit code 32: umount: ${target}: target is busy`);
    }
    for (const x of [m, ...below]) this.#remove(x);
  }

  #enter(op: MountOp, target: string, source?: string): void {
    this.calls.push(source === undefined ? { op, target } : { op, target, source });
    const failure = this.failOn?.(op, target);
    if (failure !== undefined) throw failure;
  }

  /** The topmost mount whose mount point is `p` (or, with `within`, the deepest one holding `p`). */
  #top(p: string, within = false): FakeMount | undefined {
    if (!within) return this.#mounts.findLast((m) => m.target === p);
    let best: FakeMount | undefined;
    for (const m of this.#mounts) {
      if (isUnder(p, m.target) && (best === undefined || m.target.length >= best.target.length)) best = m;
    }
    return best;
  }

  #at(target: string, what: string): FakeMount {
    const m = this.#top(target);
    if (m === undefined) {
      throw new KataError(Code.Internal, `${what} ${target}: exit code 32: ${target}: not mounted`);
    }
    return m;
  }

  #add(
    init: Pick<FakeMount, "source" | "target" | "fstype" | "options">,
    peerGroup?: number,
    copyOf?: number,
  ): FakeMount {
    const parent = this.#top(init.target, true);
    // A mount made under a shared mount is shared itself (in a new peer group).
    const group =
      peerGroup ?? (parent?.propagation === "shared" && copyOf === undefined ? this.#nextGroup++ : undefined);
    const m: FakeMount = {
      ...init,
      id: this.#nextId++,
      parentId: parent?.id ?? rootMountId,
      readonly: false,
      propagation: group === undefined ? "private" : "shared",
      peerGroup: group,
      master: undefined,
      copyOf,
    };
    this.#mounts.push(m);
    if (copyOf === undefined && parent !== undefined) {
      for (const q of this.#receivers(parent)) {
        this.#add({ ...init, target: path.join(q.target, path.relative(parent.target, init.target)) }, undefined, m.id);
      }
    }
    return m;
  }

  #remove(m: FakeMount): void {
    this.#mounts = this.#mounts.filter((x) => x !== m && x.copyOf !== m.id);
  }

  /** Mounts that receive mount events from under `m`: its peers and its slaves. */
  #receivers(m: FakeMount): FakeMount[] {
    if (m.propagation !== "shared") return [];
    return this.#mounts.filter((q) => q !== m && (q.peerGroup === m.peerGroup || q.master === m.peerGroup));
  }
}

/** `fn`'s result as a promise; a throw becomes a rejection, as from a real (async) mounter. */
function settle(fn: () => void): Promise<void> {
  return new Promise<void>((resolve) => {
    fn();
    resolve();
  });
}

async function mustExist(p: string, what: string): Promise<void> {
  try {
    await stat(p);
  } catch (e) {
    if (errnoOf(e) !== "ENOENT") throw e;
    throw new KataError(Code.Internal, `mount: ${what} ${p} does not exist`);
  }
}

/** Network namespaces as names in a set: nothing is created, entered or removed on the host. */
export class FakeNetns implements NetnsPort {
  readonly calls: { readonly op: keyof NetnsPort; readonly arg: string }[] = [];
  /** Paths a sandbox may join besides the namespaces created here (what CNI would have made). */
  readonly joinable = new Set<string>();
  /** Paths that stand for the host's namespace: joining one is refused, as NetnsManager does. */
  readonly hostPaths: ReadonlySet<string> = new Set([
    "/proc/1/ns/net",
    "/proc/self/ns/net",
    `/proc/${process.pid}/ns/net`,
  ]);
  /** What run() returns (nothing is run). */
  runResult: RunResult = { code: 0, signal: null, stdout: "", stderr: "" };
  readonly #names = new Set<string>();

  /** Namespaces created and not removed. */
  names(): string[] {
    return [...this.#names];
  }

  create(name: string, signal?: AbortSignal): Promise<string> {
    this.calls.push({ op: "create", arg: name });
    if (signal?.aborted === true) return Promise.reject(abortError(signal, `create network namespace ${name}`));
    if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === "." || name === "..") {
      return Promise.reject(
        new KataError(Code.InvalidArgument, `network namespace name ${JSON.stringify(name)} is not valid`),
      );
    }
    if (this.#names.has(name)) {
      return Promise.reject(new KataError(Code.AlreadyExists, `network namespace ${name} already exists`));
    }
    this.#names.add(name);
    return Promise.resolve(netnsPathOf(name));
  }

  remove(name: string): Promise<void> {
    this.calls.push({ op: "remove", arg: name });
    this.#names.delete(name);
    return Promise.resolve();
  }

  checkJoinable(nsPath: string): Promise<void> {
    this.calls.push({ op: "checkJoinable", arg: nsPath });
    if (!path.isAbsolute(nsPath)) {
      return Promise.reject(new KataError(Code.InvalidArgument, `network namespace path ${nsPath} is not absolute`));
    }
    if (this.hostPaths.has(nsPath)) {
      return Promise.reject(
        new KataError(Code.FailedPrecondition, `host networking requested, not supported (${nsPath} is the host's)`),
      );
    }
    const ours = [...this.#names].some((n) => netnsPathOf(n) === nsPath);
    if (!ours && !this.joinable.has(nsPath)) {
      return Promise.reject(new KataError(Code.NotFound, `network namespace ${nsPath} does not exist`));
    }
    return Promise.resolve();
  }

  run(nsPath: string, file: string, args: readonly string[]): Promise<RunResult> {
    this.calls.push({ op: "run", arg: [nsPath, file, ...args].join(" ") });
    return Promise.resolve(this.runResult);
  }
}

/**
 * The ShareBinder contract over a FakeMounter: the mount point is made below the root (a symlink in the
 * source or on the way to the target is refused with FAILED_PRECONDITION, as the native helper does), the
 * bind recorded (read-only in both views when asked), and unbind removes it and the parents it empties.
 */
export class FakeShareBinder implements ShareBinder {
  readonly #mounter: FakeMounter;
  /** The share's read-only view of `root` (the mounts/ dir's sibling shared/), where copies propagate. */
  readonly #viewOf: (root: string) => string;

  constructor(
    mounter: FakeMounter,
    viewOf: (root: string) => string = (root) => path.join(path.dirname(root), "shared"),
  ) {
    this.#mounter = mounter;
    this.#viewOf = viewOf;
  }

  async bind(b: ShareBind): Promise<void> {
    await refuseSymlinks(b.source, "/");
    await refuseSymlinks(path.join(b.root, b.relative), b.root);
    const target = path.join(b.root, b.relative);
    if (b.kind === "dir") {
      await mkdir(target, { recursive: true });
    } else {
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, "", { flag: "a" });
    }
    await this.#mounter.bind(b.source, target);
    if (b.readonly) {
      await this.#mounter.remountReadonly(target);
      const copy = path.join(this.#viewOf(b.root), b.relative);
      if (this.#mounter.mounted().includes(copy)) await this.#mounter.remountReadonly(copy);
    }
  }

  /** As the helper: the mount calls SharedDir made one by one before it had one run for them. */
  async makeViews(mounts: string, shared: string): Promise<void> {
    await this.#mounter.bind(mounts, mounts);
    try {
      await this.#mounter.setPropagation(mounts, "shared");
      await this.#mounter.bind(mounts, shared);
    } catch (e) {
      await this.#mounter.unmount(mounts);
      throw e;
    }
    try {
      await this.#mounter.setPropagation(shared, "slave");
      await this.#mounter.remountReadonly(shared);
    } catch (e) {
      await this.#mounter.unmount(shared);
      await this.#mounter.unmount(mounts);
      throw e;
    }
  }

  /** Every directory makeDir made (with its asked mode and group, which the fake does not set). */
  readonly dirs: ShareDir[] = [];

  async makeDir(d: ShareDir): Promise<void> {
    await refuseSymlinks(path.join(d.root, d.relative), d.root);
    await mkdir(path.join(d.root, d.relative), { recursive: true });
    this.dirs.push(d);
  }

  bindAll(binds: readonly ShareBind[], onBound: (b: ShareBind) => void): Promise<void> {
    return bindEach(this, binds, onBound);
  }

  async unbind(root: string, relative: string): Promise<void> {
    const target = path.join(root, relative);
    const st = await lstat(target).catch(ignoreErrno("ENOENT"));
    if (st === undefined) return;
    if (this.#mounter.mounted().includes(target)) await this.#mounter.unmount(target);
    await rm(target, { recursive: false, force: true }).catch(async (e: unknown) => {
      if (errnoOf(e) !== "EISDIR" && errnoOf(e) !== "ERR_FS_EISDIR") throw e;
      await rmdir(target);
    });
    for (let dir = path.dirname(target); dir.startsWith(root + path.sep); dir = path.dirname(dir)) {
      if ((await readdir(dir)).length > 0) break;
      await rmdir(dir);
    }
  }
}

/** FAILED_PRECONDITION when an existing component of `p` below `root` is a symlink. */
async function refuseSymlinks(p: string, root: string): Promise<void> {
  const parts = path.relative(root, p).split(path.sep);
  let cur = root;
  for (const part of parts) {
    cur = path.join(cur, part);
    const st = await lstat(cur).catch(ignoreErrno("ENOENT"));
    if (st === undefined) return;
    if (st.isSymbolicLink()) {
      throw new KataError(Code.FailedPrecondition, `${cur}: a component is a symlink: refusing to follow it`);
    }
  }
}

/**
 * A PodNetworkPort that runs nothing: setup "makes" one tap per configured link (tracked, so leak checks
 * see one left behind) and hands back `network`; teardown removes them. Fault injection: `failSetup`.
 */
export class FakePodNetwork implements PodNetworkPort {
  readonly calls: { readonly op: keyof PodNetworkPort; readonly nsPath: string }[] = [];
  /** What setup returns (by default one veth wired to one tap, and nothing for the guest to do). */
  network: PodNetwork = {
    ...noPodNetwork,
    links: [{ veth: "eth0", tap: "tap0_kata" }],
    nics: [{ tapName: "tap0_kata", mac: "02:00:00:00:00:01" }],
  };
  /** When set, setup fails with it after making the taps (their undo is registered first). */
  failSetup: Error | undefined;
  readonly #taps = new Set<string>();

  /** Taps made and not removed, as "<nsPath> <tap>". */
  taps(): string[] {
    return [...this.#taps];
  }

  setup(nsPath: string, _model: InternetworkingModel, undo: CleanupStack, signal: AbortSignal): Promise<PodNetwork> {
    this.calls.push({ op: "setup", nsPath });
    if (signal.aborted) return Promise.reject(abortError(signal, "set up the pod network"));
    for (const l of this.network.links) {
      const key = `${nsPath} ${l.tap}`;
      this.#taps.add(key);
      undo.defer(`remove ${l.tap}`, () => {
        this.#taps.delete(key);
      });
    }
    if (this.failSetup !== undefined) return Promise.reject(this.failSetup);
    return Promise.resolve(this.network);
  }

  sweep(nsPath: string): Promise<void> {
    this.calls.push({ op: "sweep", nsPath });
    for (const t of this.taps()) if (t.startsWith(`${nsPath} `)) this.#taps.delete(t);
    return Promise.resolve();
  }

  teardown(nsPath: string, links: readonly NetworkLink[]): Promise<void> {
    this.calls.push({ op: "teardown", nsPath });
    for (const l of links) this.#taps.delete(`${nsPath} ${l.tap}`);
    return Promise.resolve();
  }
}
