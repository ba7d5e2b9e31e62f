// Facts about the host that decide how a VM starts: KVM or TCG, the CPU's clock for TCG's early TSC.

import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import path from "node:path";

export interface HostProbe {
  /**
   * KVM can run our guest: /dev/kvm is read/write AND it is backed by hardware virtualization
   * (kvm_intel or kvm_amd). Some cloud VMs offer /dev/kvm through kvm_pvm, which only runs PVM-enabled
   * guest kernels: a stock Debian guest hangs there, so that counts as no KVM.
   */
  kvmUsable(): boolean;
  /** Why KVM is not usable, or undefined when it is. */
  kvmProblem(): string | undefined;
  /** /proc/cpuinfo content ("" when unreadable). */
  cpuinfo(): string;
  /** Absolute path of `bin` on PATH, or undefined. */
  which(bin: string): string | undefined;
}

export class RealHostProbe implements HostProbe {
  readonly #path: string;

  constructor(pathEnv: string) {
    this.#path = pathEnv;
  }

  kvmUsable(): boolean {
    return this.kvmProblem() === undefined;
  }

  kvmProblem(): string | undefined {
    try {
      accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    } catch {
      return existsSync("/dev/kvm") ? "/dev/kvm is not accessible (run as root)" : "/dev/kvm does not exist";
    }
    if (existsSync("/sys/module/kvm_intel") || existsSync("/sys/module/kvm_amd")) return undefined;
    if (existsSync("/sys/module/kvm_pvm")) {
      return "/dev/kvm is provided by kvm_pvm (no hardware virtualization; it runs only PVM guest kernels)";
    }
    return "neither kvm_intel nor kvm_amd is loaded (no hardware virtualization)";
  }

  cpuinfo(): string {
    try {
      return readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      return "";
    }
  }

  which(bin: string): string | undefined {
    if (bin.includes("/")) return existsSync(bin) ? bin : undefined;
    for (const dir of this.#path.split(":")) {
      if (dir === "") continue;
      const p = path.join(dir, bin);
      if (existsSync(p)) return p;
    }
    return undefined;
  }
}
