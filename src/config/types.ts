// The typed runtime configuration: what configuration.toml (Kata's format, see docs/configuration.md) becomes
// after parsing, defaults and validation. Field names are Kata's TOML keys in camelCase, with units added
// where Kata's key has none (default_memory -> defaultMemoryMiB, dial_timeout -> dialTimeoutMs).

/** QEMU machine types kata-ts can boot. Kata's "pc", "virt", "pseries", "s390-ccw-virtio" are refused. */
export type MachineType = "microvm" | "q35";
export const machineTypes: readonly MachineType[] = ["microvm", "q35"];

/** Host directory sharing. Kata's "virtio-fs", "virtio-fs-nydus" and "none" are refused. */
export type SharedFs = "virtio-9p";
export const sharedFsTypes: readonly SharedFs[] = ["virtio-9p"];

/** Kata's block_device_driver values, all accepted: kata-ts does not hot-plug block devices yet. */
export type BlockDeviceDriver = "virtio-blk" | "virtio-scsi" | "virtio-mmio" | "nvdimm" | "virtio-blk-ccw";
export const blockDeviceDrivers: readonly BlockDeviceDriver[] = [
  "virtio-blk",
  "virtio-scsi",
  "virtio-mmio",
  "nvdimm",
  "virtio-blk-ccw",
];

/** Kata's internetworking models (how the pod's network namespace is wired to the VM). */
export type InternetworkingModel = "tcfilter" | "macvtap" | "none";
export const internetworkingModels: readonly InternetworkingModel[] = ["tcfilter", "macvtap", "none"];

/** Where runtime spans go when `[runtime] enable_tracing` is on (kata-ts key `tracing_exporter`). */
export type TracingExporter = { readonly kind: "none" } | { readonly kind: "file"; readonly path: string };

/** `[hypervisor.qemu]` */
export interface HypervisorConfig {
  /** QEMU binary. */
  readonly path: string;
  readonly kernel: string;
  /** Exactly one of initrd and image is non-empty. */
  readonly initrd: string;
  /** A rootfs disk image booted with systemd as init; "" when booting from an initrd. */
  readonly image: string;
  readonly machineType: MachineType;
  /** The user's kernel_params, split on white space; they come last on the command line, so they win. */
  readonly kernelParams: readonly string[];
  /** -bios file; "" uses QEMU's default firmware. */
  readonly firmware: string;
  readonly defaultVcpus: number;
  /** Cap of the VM's vCPUs after sizing (and of CPU hotplug on q35); 0: the host's CPUs. */
  readonly defaultMaxVcpus: number;
  readonly defaultMemoryMiB: number;
  /** Cap of the VM's memory after sizing (TOML: default_maxmemory, MiB); 0: the host's memory. */
  readonly defaultMaxMemoryMiB: number;
  readonly memorySlots: number;
  readonly defaultBridges: number;
  readonly blockDeviceDriver: BlockDeviceDriver;
  readonly sharedFs: SharedFs;
  /** 9p packet payload size in bytes (the guest's msize= mount option). */
  readonly msize9p: number;
  /** reclaim_guest_freed_memory: a free-page-reporting balloon gives the guest's freed memory back. */
  readonly reclaimGuestFreedMemory: boolean;
  /** tcg_tb_size (kata-ts): TCG's translated-code buffer in MiB (default 256); 0 = QEMU's default (1 GiB). */
  readonly tcgTbSizeMiB: number;
  readonly enableDebug: boolean;
  readonly disableNestingChecks: boolean;
  /**
   * Regular expressions over the annotation name after `io.katacontainers.config.hypervisor.`; each is
   * matched against the whole name (kata-ts anchors them, Kata does not).
   */
  readonly enableAnnotations: readonly string[];
  /** glob(3) patterns a `hypervisor.path` annotation value must match (CVE-2020-27151). */
  readonly validHypervisorPaths: readonly string[];
  /** kata-ts keys (Kata has no equivalent): glob(3) patterns for the kernel/initrd/image annotations. */
  readonly validKernelPaths: readonly string[];
  readonly validInitrdPaths: readonly string[];
  readonly validImagePaths: readonly string[];
}

/** `[agent.kata]` */
export interface AgentConfig {
  readonly enableDebug: boolean;
  readonly enableTracing: boolean;
  /** "name param=value ..." entries, loaded in the guest with modprobe(8). */
  readonly kernelModules: readonly string[];
  readonly debugConsoleEnabled: boolean;
  /** How long to wait for the guest agent to answer after the VM starts (TOML: dial_timeout, seconds). */
  readonly dialTimeoutMs: number;
  /**
   * Deadline of one call into the guest once it is up (TOML: request_timeout_ms, Kata runtime-rs's
   * key); WaitProcess and the stdio streams have none.
   */
  readonly requestTimeoutMs: number;
}

/** `[runtime]` */
export interface RuntimeSection {
  readonly enableDebug: boolean;
  readonly enableTracing: boolean;
  readonly tracingExporter: TracingExporter;
  readonly internetworkingModel: InternetworkingModel;
  readonly disableNewNetns: boolean;
  readonly sandboxCgroupOnly: boolean;
  /** Kata's disable_guest_seccomp: the containers' seccomp profiles are not applied in the guest. */
  readonly disableGuestSeccomp: boolean;
  readonly experimental: readonly string[];
  readonly enablePprof: boolean;
  /** CreateContainer's deadline (TOML: create_container_timeout, seconds). */
  readonly createContainerTimeoutMs: number;
}

/** `[factory]` */
export interface FactoryConfig {
  readonly enableTemplate: boolean;
  readonly templatePath: string;
  /** > 0 enables the VM cache with that many pre-booted VMs. */
  readonly vmCacheNumber: number;
  readonly vmCacheEndpoint: string;
}

export interface RuntimeConfig {
  readonly hypervisor: HypervisorConfig;
  readonly agent: AgentConfig;
  readonly runtime: RuntimeSection;
  readonly factory: FactoryConfig;
}

/**
 * One problem with untrusted input. `path` names the offending item: `[hypervisor.qemu] default_memory`,
 * `[hypervisor.qemu] enable_annotations[2]`, or an annotation key.
 */
export interface Issue {
  readonly path: string;
  readonly message: string;
}

/** A configuration problem, with the file that set the offending value. */
export interface ConfigIssue extends Issue {
  readonly file: string;
}

/** "/etc/kata-ts/configuration.toml: [hypervisor.qemu] default_memory: must be an integer >= 128" */
export function formatConfigIssue(i: ConfigIssue): string {
  return `${i.file}: ${i.path}: ${i.message}`;
}
