// The guest kernel parameters the configuration asks for, in Kata's order (katautils SetKernelParams):
//   1. `debug` when the hypervisor (or the caller) wants debug output;
//   2. systemd's target and masks, only when booting an image (systemd is init there; with an initrd the
//      agent is init), plus systemd.show_status (Kata's qemu handleImagePath);
//   3. `scsi_mod.scan=none` for virtio-scsi, so the guest does not scan a bus the runtime fills itself;
//   4. the agent's parameters from [agent.kata];
//   5. the user's kernel_params, last: the kernel honours the last value of a repeated parameter.
// Not here: the machine-type defaults (console, quiet, tsc, i8042, pci=lastbus ...) and root= for an image,
// which the QEMU driver puts in front of this list (hypervisor/qemu fastKernelParams), and Kata's
// `fips=1` host probe.

import { systemdUnitName } from "./defaults.js";
import type { RuntimeConfig } from "./types.js";

/** Kata's agent listens for the debug console on this vsock port (kata_agent.go kernelParamDebugConsoleVPortValue). */
export const debugConsoleVport = 1026;

export interface KernelParamsExtra {
  /** Debug output even when [hypervisor.qemu] enable_debug is off (e.g. a --debug flag). */
  readonly debug?: boolean;
}

/** Rule 2. Kata's systemdKernelParam (create.go), without init= (removed in Kata runtime#1937). */
export function systemdParams(cfg: RuntimeConfig, debug: boolean): string[] {
  if (cfg.hypervisor.image === "") return [];
  return [
    `systemd.unit=${systemdUnitName}`,
    "systemd.mask=systemd-networkd.service",
    "systemd.mask=systemd-networkd.socket",
    ...(debug ? ["systemd.show_status=true", "systemd.log_level=debug"] : ["systemd.show_status=false"]),
  ];
}

/** Rule 4. Kata's KataAgentKernelParams, for the [agent.kata] keys kata-ts has. */
export function agentParams(cfg: RuntimeConfig): string[] {
  const a = cfg.agent;
  return [
    ...(a.enableDebug ? ["agent.log=debug"] : []),
    ...(a.enableTracing ? ["agent.trace=true"] : []),
    ...(a.debugConsoleEnabled ? ["agent.debug_console", `agent.debug_console_vport=${debugConsoleVport}`] : []),
  ];
}

export function kernelParams(cfg: RuntimeConfig, extra: KernelParamsExtra = {}): string[] {
  const debug = cfg.hypervisor.enableDebug || extra.debug === true;
  return [
    // After the driver's `quiet loglevel=1`: the later parameter wins.
    ...(debug ? ["debug"] : []),
    ...systemdParams(cfg, debug),
    ...(cfg.hypervisor.blockDeviceDriver === "virtio-scsi" ? ["scsi_mod.scan=none"] : []),
    ...agentParams(cfg),
    ...cfg.hypervisor.kernelParams,
  ];
}
