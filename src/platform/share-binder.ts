// Binds into a sandbox's share directory that hold under a race with the guest: the native helper
// kata-ts-mount opens each source once without following symlinks, checks that descriptor (kind, no
// kernel file system), and mounts it from the descriptor at a target it resolves below the share root
// without following symlinks, leaving the root or entering another mount (CVE-2021-30465, CVE-2020-2026).

import { abortError, deadline } from "../base/async.js";
import { Code, KataError, codeOf } from "../base/errors.js";
import { describeExit, type ProcessRunner } from "./process.js";

export interface ShareBind {
  /** Absolute, already resolved (no symlink in it): a symlink found there now is refused. */
  readonly source: string;
  /** The share's host-only mounts/ directory. */
  readonly root: string;
  /** Below root: "<cid>/rootfs", "<cid>/volumes/<name>". */
  readonly relative: string;
  readonly kind: "dir" | "file";
  /** Read-only on the host too (CVE-2020-28914), set before the mount is attached, so every copy has it. */
  readonly readonly: boolean;
}

/** A directory to make (or fix) inside a bind the guest writes in, as kata-ts-mount mkdir does. */
export interface ShareDir {
  /** The bind it is made in (a host path under mounts/): nothing below it is followed. */
  readonly root: string;
  readonly relative: string;
  readonly mode: number;
  readonly gid?: number;
}

export interface ShareBinder {
  /** Mounts `source` at root/relative (nosuid, nodev). FAILED_PRECONDITION when the helper refuses it. */
  bind(b: ShareBind, signal?: AbortSignal): Promise<void>;
  /**
   * Mounts each of `binds` in order, as bind() does, in one helper run (a container's rootfs and volumes:
   * one spawn instead of one each); `onBound` after each one made, so that when a later one fails the
   * caller knows which to unbind. The error names the bind that failed.
   */
  bindAll(binds: readonly ShareBind[], onBound: (b: ShareBind) => void, signal?: AbortSignal): Promise<void>;
  /** Unmounts root/relative (detached when busy) and removes it and the parents it leaves empty. */
  unbind(root: string, relative: string, signal?: AbortSignal): Promise<void>;
  /** Makes root/relative a directory with that group, then that mode (setgid kept), made or found. */
  makeDir(d: ShareDir, signal?: AbortSignal): Promise<void>;
  /**
   * The share's two views: `mounts` bound on itself with shared propagation, `shared` a read-only slave
   * bind of it. Both or neither: on failure nothing of them stays mounted.
   */
  makeViews(mounts: string, shared: string, signal?: AbortSignal): Promise<void>;
}

/** The helper's exit statuses (native/kata-ts-mount.c). */
const exitRefused = 3;
const exitUsage = 2;

/** A bind or unbind is a few syscalls; one that takes this long is stuck in the kernel. */
export const defaultShareBindTimeoutMs = 10_000;

export class HelperShareBinder implements ShareBinder {
  readonly #runner: ProcessRunner;
  readonly #helper: string;
  readonly #timeoutMs: number;

  constructor(runner: ProcessRunner, helperPath: string, timeoutMs: number = defaultShareBindTimeoutMs) {
    this.#runner = runner;
    this.#helper = helperPath;
    this.#timeoutMs = timeoutMs;
  }

  async bind(b: ShareBind, signal?: AbortSignal): Promise<void> {
    await this.bindAll([b], () => undefined, signal);
  }

  async bindAll(binds: readonly ShareBind[], onBound: (b: ShareBind) => void, signal?: AbortSignal): Promise<void> {
    if (binds.length === 0) return;
    const args = ["bind", ...binds.flatMap((b, i) => [...(i === 0 ? [] : ["--and"]), ...bindArgs(b)])];
    let made = 0;
    const report = (stdout: string): void => {
      // One "bound" line per bind made, in order: those are the caller's to unbind, whatever happens next.
      const n = Math.min(binds.length, stdout.split("\n").filter((l) => l === "bound").length);
      for (; made < n; made++) onBound(binds[made] as ShareBind);
    };
    const op = (): string => {
      const b = binds[Math.min(made, binds.length - 1)] as ShareBind;
      return `share ${b.source} as ${b.relative}`;
    };
    await this.#run(args, op, signal, report);
  }

  async unbind(root: string, relative: string, signal?: AbortSignal): Promise<void> {
    await this.#run(["unbind", root, relative], () => `unshare ${relative}`, signal);
  }

  async makeDir(d: ShareDir, signal?: AbortSignal): Promise<void> {
    const args = ["mkdir", "--mode", d.mode.toString(8), ...(d.gid === undefined ? [] : ["--gid", String(d.gid)])];
    await this.#run([...args, d.root, d.relative], () => `make ${d.relative} in ${d.root}`, signal);
  }

  async makeViews(mounts: string, shared: string, signal?: AbortSignal): Promise<void> {
    await this.#run(["views", mounts, shared], () => `make the share's views ${mounts} and ${shared}`, signal);
  }

  async #run(
    args: string[],
    op: () => string,
    signal: AbortSignal | undefined,
    report?: (stdout: string) => void,
  ): Promise<void> {
    const limit = deadline(this.#timeoutMs, signal);
    let r;
    try {
      r = await this.#runner.run(this.#helper, args, { signal: limit.signal });
    } catch (e) {
      throw new KataError(codeOf(e), `${op()}: ${this.#helper} did not run (build it: npm run build)`, { cause: e });
    } finally {
      limit.clear();
    }
    report?.(r.stdout);
    if (limit.signal.aborted) throw abortError(limit.signal, op());
    if (r.code === 0) return;
    const why = r.stderr.trim().replace(/^kata-ts-mount: /, "");
    const code = r.code === exitRefused ? Code.FailedPrecondition : Code.Internal;
    const what = r.code === exitUsage ? `bad helper arguments (a bug): ${why}` : why || describeExit(r);
    throw new KataError(code, `${op()}: ${what}`);
  }
}

function bindArgs(b: ShareBind): string[] {
  return [...(b.readonly ? ["--ro"] : []), "--kind", b.kind, b.source, b.root, b.relative];
}

/** bindAll as a sequence of bind() calls: for binders that have no batch of their own (the fakes). */
export async function bindEach(
  binder: Pick<ShareBinder, "bind">,
  binds: readonly ShareBind[],
  onBound: (b: ShareBind) => void,
  signal?: AbortSignal,
): Promise<void> {
  for (const b of binds) {
    await binder.bind(b, signal);
    onBound(b);
  }
}
