// Facts about the host that decide how a VM starts: KVM or TCG, the CPU's clock for TCG's early TSC, and
// the CPUs and memory a pod may ask for at most.

import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
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
  /** CPUs this process may run on (nproc: the affinity mask, as Go's runtime.NumCPU that Kata uses). */
  cpuCount(): number;
  /** MemTotal of /proc/meminfo in MiB, or undefined when it cannot be read. */
  memTotalMiB(): number | undefined;
}

/** MemTotal of a /proc/meminfo text in MiB (rounded down), or undefined when it has none. */
export function memTotalMiBOf(meminfo: string): number | undefined {
  const m = /^MemTotal:\s+(\d+) kB$/m.exec(meminfo);
  return m === null ? undefined : Math.floor(Number(m[1]) / 1024);
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

  cpuCount(): number {
    return availableParallelism();
  }

  memTotalMiB(): number | undefined {
    try {
      return memTotalMiBOf(readFileSync("/proc/meminfo", "utf8"));
    } catch {
      // No /proc: callers take an unknown size as "no memory override allowed".
      return undefined;
    }
  }
}
