// The hypervisor seam: small on purpose (kata's has 29 methods). A Vm is a running guest with an agent
// socket; what runs inside is the sandbox layer's business.

import type { MachineType } from "../config/types.js";
import type { Child, ExitStatus } from "../platform/process.js";

/** A disk the guest may read but never write, such as the guest image's tools disk. */
export interface ReadonlyDisk {
  readonly path: string;
  /** virtio-blk serial (1..20 bytes, the virtio limit): how the guest finds the disk (/sys/block/vdX/serial). */
  readonly serial: string;
}

/**
 * A network card backed by a tap device that already exists in the VM's network namespace (the pod's
 * tcfilter endpoint): QEMU opens it by name and never configures it (script=no).
 */
export interface VmNic {
  /** The tap's name in the netns (1..15 bytes, IFNAMSIZ). */
  readonly tapName: string;
  /** The guest NIC's MAC, "aa:bb:cc:dd:ee:ff": the pod veth's, so the guest finds the NIC by it. */
  readonly mac: string;
}

/** See VmSpec.hotplug. */
export interface VmHotplugRoom {
  readonly maxVcpus: number;
  readonly maxMemoryMiB: number;
  /** 0: no memory hotplug (then maxMemoryMiB is memoryMiB). */
  readonly memorySlots: number;
}

/**
 * What a VM is made of, whoever describes it: the sandbox's resolved configuration, the driver's VmConfig and
 * the QEMU planner's QemuVmConfig all start from these fields.
 */
export interface VmSpec {
  readonly machineType: MachineType;
  readonly vcpus: number;
  readonly memoryMiB: number;
  /**
   * Room to hotplug vCPUs and memory DIMMs later (q35; microvm has no hotplug): QEMU starts with
   * `maxcpus=maxVcpus` and `slots=memorySlots,maxmem=maxMemoryMiB`. Absent: no room.
   */
  readonly hotplug?: VmHotplugRoom;
  readonly kernelPath: string;
  readonly initrdPath: string;
  /** Disk images attached read-only, in order (the guest image's tools disk); see ReadonlyDisk. */
  readonly readonlyDisks?: readonly ReadonlyDisk[];
  /** Parameters after the machine-type defaults the driver adds itself (so these win). */
  readonly kernelParams: readonly string[];
  /** The hypervisor binary, when not the driver's default (configuration, annotations). */
  readonly binaryPath?: string;
  /** TCG only: the translated-code buffer, MiB (absent: QEMU's 1 GiB, which stays resident once filled). */
  readonly tcgTbSizeMiB?: number;
  /** A free-page-reporting balloon, so memory the guest frees goes back to the host. */
  readonly reclaimGuestFreedMemory?: boolean;
}

export interface VmConfig extends VmSpec {
  readonly id: string;
  /** Private directory for the VM's sockets and console log; created, and removed by stop(). */
  readonly vmDir: string;
  /** Host directory exported to the guest as the sandbox share (read-only view, see storage/shared-dir). */
  readonly sharedDir?: string;
  /** Run the hypervisor inside this network namespace (a path like /var/run/netns/x). */
  readonly netnsPath?: string;
  /** NICs, in order, each on a tap that exists in `netnsPath` (the guest sees them as eth0, eth1, ...). */
  readonly nics?: readonly VmNic[];
  /**
   * VM templates (docs/factory.md): guest RAM in this file instead of anonymous memory. The template maps
   * it shared (its RAM is the file), clones privately (copy-on-write: each clone's writes are its own).
   */
  readonly memoryFile?: { readonly path: string; readonly share: boolean };
  /** Start waiting for a saved device state (Vm.restoreState) instead of booting the kernel. */
  readonly incoming?: boolean;
  /**
   * Told each line of the guest console (cut at 4 KiB), besides the capped console log: the guest's logs
   * into the host's when debugging. Must not throw or block.
   */
  readonly onConsoleLine?: (line: string) => void;
  /**
   * VM cache (docs/factory.md#vm-cache): QEMU runs under a guard that listens on `controlSocket` for a
   * new owner, and dies with whoever owns it (src/platform/vm-guard.ts).
   */
  readonly guard?: { readonly controlSocket: string };
}

/** A running VM taken over from the process that started it (Hypervisor.adoptVm). */
export interface AdoptedVmConfig {
  readonly id: string;
  /** Its sockets and console log (moved there by the adopter). */
  readonly vmDir: string;
  readonly machineType: MachineType;
  /** Its QEMU as this process now owns it: the guard's lifeline (pid, exit, kill). */
  readonly child: Child;
  readonly onConsoleLine?: (line: string) => void;
}

export interface Vm {
  readonly id: string;
  readonly pid: number;
  /** The host end of the agent channel: a unix socket the hypervisor listens on. */
  readonly agentSocketPath: string;
  /** The guest console, capped by the driver (older output rotated to `<consoleLogPath>.1`). */
  readonly consoleLogPath: string;
  /** Resolves when the hypervisor process has exited, however it ended. */
  readonly exited: Promise<ExitStatus>;
  /**
   * Calls `listener` each time the guest closes its end of the agent channel: the agent exited, and
   * whatever its init starts next knows nothing of the sandbox. Returns a function that unsubscribes.
   */
  onAgentChannelClosed(listener: () => void): () => void;
  /** The last `lines` lines of the guest console, for errors. */
  consoleTail(lines: number): Promise<string>;
  pause(signal?: AbortSignal): Promise<void>;
  resume(signal?: AbortSignal): Promise<void>;
  /** Stops the VM (graceful quit, then SIGKILL) and removes its directory. Idempotent; never hangs. */
  stop(): Promise<void>;
  /**
   * Templates: pauses the VM and writes its device state to `statePath` (RAM stays in its memoryFile).
   * Absent on a hypervisor that cannot.
   */
  saveState?(statePath: string, signal: AbortSignal): Promise<void>;
  /** Clones (started with `incoming`): loads the device state saved by saveState, then runs the VM. */
  restoreState?(statePath: string, signal: AbortSignal): Promise<void>;
  /**
   * VM cache: closes this process's connections to the VM (QMP, console) without stopping it, so the
   * process that adopts it can connect. Its lifetime goes with its guard's lifeline, not with this.
   */
  release?(): Promise<void>;
  /**
   * VM cache: a guarded VM (VmConfig.guard) as its current owner holds it: `adopted` resolves once
   * another process took it over; `letGo()` kills it (the guard SIGKILLs QEMU).
   */
  readonly owner?: { readonly adopted: Promise<void>; letGo(): void };
  /**
   * q35 (VmSpec.hotplug room): plugs one vCPU into the first free slot; false when no slot is free.
   * The guest onlines it (the agent's OnlineCPUMem). Absent on a hypervisor that cannot.
   */
  hotplugVcpu?(signal: AbortSignal): Promise<boolean>;
  /**
   * q35: plugs one memory DIMM of `sizeMiB` (a multiple of hotplugMemoryAlignMiB); returns its device id
   * once QEMU has it (the guest may not have seen it yet: memoryTaken).
   */
  hotplugMemory?(sizeMiB: number, signal: AbortSignal): Promise<string>;
  /** Returns once the guest's ACPI handler took the DIMM (its blocks exist, offline until onlined). */
  memoryTaken?(deviceId: string, signal: AbortSignal): Promise<void>;
}

/** Hot-added memory comes in multiples of this: x86_64's memory block (section) size. */
export const hotplugMemoryAlignMiB = 128;

export interface Hypervisor {
  readonly name: string;
  /** Starts a VM; returns once the hypervisor answers its control socket (not when the guest is up). */
  startVm(config: VmConfig, signal: AbortSignal): Promise<Vm>;
  /** Takes over a VM started by another process (VM cache); absent on a hypervisor that cannot. */
  adoptVm?(config: AdoptedVmConfig, signal: AbortSignal): Promise<Vm>;
}
