// Mounts go through this port. Node has no mount(2), so the real implementation runs mount(8)/umount(8)
// (util-linux on the host, busybox in the guest) through the ProcessRunner.

import { deadline } from "../base/async.js";
import { runChecked, type ProcessRunner } from "./process.js";

export interface MountRequest {
  readonly source: string;
  readonly target: string;
  readonly fstype?: string;
  readonly options?: readonly string[];
}

export type Propagation = "shared" | "slave" | "private" | "unbindable";

/** Every method takes an optional caller signal; an aborted call fails CANCELLED or DEADLINE_EXCEEDED. */
export interface Mounter {
  mount(m: MountRequest, signal?: AbortSignal): Promise<void>;
  bind(source: string, target: string, opts?: { recursive?: boolean; signal?: AbortSignal }): Promise<void>;
  /** Makes the mount at `target` read-only (a bind mount ignores "ro" until remounted). */
  remountReadonly(target: string, signal?: AbortSignal): Promise<void>;
  setPropagation(target: string, kind: Propagation, signal?: AbortSignal): Promise<void>;
  /** Unmount `target`; `detach` is MNT_DETACH (umount -l). */
  unmount(target: string, opts?: { detach?: boolean; signal?: AbortSignal }): Promise<void>;
}

/**
 * How long one mount(8) or umount(8) may take. A mount of a local or virtio file system is quick; one that
 * hangs (a stuck FUSE or network server, an unmount blocked in the kernel) must not hang the lifecycle
 * operation that asked for it.
 */
export const defaultMountTimeoutMs = 10_000;

export interface CommandMounterOptions {
  readonly mount?: string;
  readonly umount?: string;
  /** Deadline of each command (default defaultMountTimeoutMs). */
  readonly timeoutMs?: number;
}

export class CommandMounter implements Mounter {
  readonly #runner: ProcessRunner;
  readonly #mountBin: string;
  readonly #umountBin: string;
  readonly #timeoutMs: number;

  constructor(runner: ProcessRunner, opts: CommandMounterOptions = {}) {
    this.#runner = runner;
    this.#mountBin = opts.mount ?? "mount";
    this.#umountBin = opts.umount ?? "umount";
    this.#timeoutMs = opts.timeoutMs ?? defaultMountTimeoutMs;
  }

  async mount(m: MountRequest, signal?: AbortSignal): Promise<void> {
    const args: string[] = [];
    if (m.fstype !== undefined) args.push("-t", m.fstype);
    if (m.options !== undefined && m.options.length > 0) args.push("-o", m.options.join(","));
    args.push(m.source, m.target);
    await this.#run(this.#mountBin, args, signal);
  }

  async bind(source: string, target: string, opts: { recursive?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    await this.#run(this.#mountBin, [opts.recursive === true ? "--rbind" : "--bind", source, target], opts.signal);
  }

  async remountReadonly(target: string, signal?: AbortSignal): Promise<void> {
    await this.#run(this.#mountBin, ["-o", "remount,bind,ro", target], signal);
  }

  async setPropagation(target: string, kind: Propagation, signal?: AbortSignal): Promise<void> {
    await this.#run(this.#mountBin, [`--make-${kind}`, target], signal);
  }

  async unmount(target: string, opts: { detach?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    await this.#run(this.#umountBin, opts.detach === true ? ["-l", target] : [target], opts.signal);
  }

  /** Fails DEADLINE_EXCEEDED (naming the command) past the deadline, CANCELLED when `signal` aborts. */
  async #run(file: string, args: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    const d = deadline(this.#timeoutMs, signal);
    try {
      await runChecked(this.#runner, file, args, { signal: d.signal });
    } finally {
      d.clear();
    }
  }
}
