// Mounts go through this port. Node has no mount(2), so the real implementation runs mount(8)/umount(8)
// (util-linux on the host, busybox in the guest) through the ProcessRunner.

import { runChecked, type ProcessRunner } from "./process.js";

export interface MountRequest {
  readonly source: string;
  readonly target: string;
  readonly fstype?: string;
  readonly options?: readonly string[];
}

export type Propagation = "shared" | "slave" | "private" | "unbindable";

export interface Mounter {
  mount(m: MountRequest, signal?: AbortSignal): Promise<void>;
  bind(source: string, target: string, opts?: { recursive?: boolean }): Promise<void>;
  /** Makes the mount at `target` read-only (a bind mount ignores "ro" until remounted). */
  remountReadonly(target: string): Promise<void>;
  setPropagation(target: string, kind: Propagation): Promise<void>;
  /** Unmount `target`; `detach` is MNT_DETACH (umount -l). */
  unmount(target: string, opts?: { detach?: boolean }): Promise<void>;
}

export class CommandMounter implements Mounter {
  readonly #runner: ProcessRunner;
  readonly #mountBin: string;
  readonly #umountBin: string;

  constructor(runner: ProcessRunner, bins: { mount?: string; umount?: string } = {}) {
    this.#runner = runner;
    this.#mountBin = bins.mount ?? "mount";
    this.#umountBin = bins.umount ?? "umount";
  }

  async mount(m: MountRequest, signal?: AbortSignal): Promise<void> {
    const args: string[] = [];
    if (m.fstype !== undefined) args.push("-t", m.fstype);
    if (m.options !== undefined && m.options.length > 0) args.push("-o", m.options.join(","));
    args.push(m.source, m.target);
    await runChecked(this.#runner, this.#mountBin, args, signal === undefined ? {} : { signal });
  }

  async bind(source: string, target: string, opts: { recursive?: boolean } = {}): Promise<void> {
    await runChecked(this.#runner, this.#mountBin, [opts.recursive === true ? "--rbind" : "--bind", source, target]);
  }

  async remountReadonly(target: string): Promise<void> {
    await runChecked(this.#runner, this.#mountBin, ["-o", "remount,bind,ro", target]);
  }

  async setPropagation(target: string, kind: Propagation): Promise<void> {
    await runChecked(this.#runner, this.#mountBin, [`--make-${kind}`, target]);
  }

  async unmount(target: string, opts: { detach?: boolean } = {}): Promise<void> {
    await runChecked(this.#runner, this.#umountBin, opts.detach === true ? ["-l", target] : [target]);
  }
}
