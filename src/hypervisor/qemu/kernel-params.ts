// The guest kernel command line defaults the QEMU driver puts in front of a VM's own parameters, per
// machine type and accelerator (measured under TCG: feasibility §2, fast-cmdline.txt).

import { Code, KataError } from "../../base/errors.js";
import type { MachineType } from "../../config/types.js";
import type { Accel } from "./args/switches.js";

/**
 * The host TSC frequency in kHz from /proc/cpuinfo content ("cpu MHz : 2096.013" -> 2096013), or undefined.
 * Under TCG the guest TSC is the host's; microvm has no HPET or PM timer, so without tsc_early_khz= the guest
 * sometimes hangs calibrating against the PIT (feasibility pitfall 3: 1 boot in 6).
 */
export function tscEarlyKhz(cpuinfo: string): number | undefined {
  const match = /^cpu MHz\s*:\s*(\d+)(?:\.(\d*))?\s*$/m.exec(cpuinfo);
  if (match === null) return undefined;
  // Decimal arithmetic on the digits: 2096.013 * 1000 is 2096012.9999999998 in floating point.
  const whole = Number(match[1]);
  const frac = Number((match[2] ?? "").padEnd(3, "0").slice(0, 3));
  const khz = whole * 1000 + frac;
  return khz > 0 ? khz : undefined;
}

/**
 * The machine-type defaults for the guest kernel command line: the fast command line measured under TCG
 * (feasibility §2, fast-cmdline.txt; ~2.1 s to /init on microvm), as a list of parameters.
 * - `pci=lastbus=0` only on q35 (microvm has no PCI). Devices behind a pcie-root-port are still found with it
 *   (checked with a cold-plugged virtio-blk-pci on QEMU 7.2 and the Debian 6.1 kernel).
 * - `tsc_early_khz=` only when tscKhz is given (see tscEarlyKhz; needed on microvm under TCG).
 * - `mitigations=off nokaslr` only under TCG, which emulates no speculative execution, so the mitigations only
 *   cost time; under KVM the guest kernel is part of the isolation between agent and workload and keeps them.
 */
export function fastKernelParams(machineType: MachineType, accel: Accel, tscKhz?: number): string[] {
  // Order as in fast-cmdline.txt, so the TCG microvm line is the measured one verbatim.
  const params = [
    "console=ttyS0",
    "quiet",
    // 1, not the measured 0: KERN_EMERG lines still reach the console, so a kernel panic says why in the
    // console a failed boot keeps (nothing else is printed at that level in a boot that works).
    "loglevel=1",
    "tsc=reliable",
    "no_timer_check",
    "rcupdate.rcu_expedited=1",
    "i8042.direct=1",
    "i8042.dumbkbd=1",
    "i8042.nopnp=1",
    "i8042.noaux=1",
    "noreplace-smp",
    "reboot=k",
    "cryptomgr.notests",
  ];
  if (accel === "tcg") params.push("mitigations=off", "nokaslr");
  params.push("audit=0", "apparmor=0", "security=none", "random.trust_cpu=on");
  if (machineType === "q35") params.push("pci=lastbus=0");
  if (tscKhz !== undefined) {
    if (!Number.isInteger(tscKhz) || tscKhz < 1) {
      throw new KataError(Code.InvalidArgument, `tsc_early_khz: not a positive integer: ${tscKhz}`);
    }
    params.push(`tsc_early_khz=${tscKhz}`);
  }
  return params;
}
