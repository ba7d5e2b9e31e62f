// The one place for configuration defaults: the value of every key a configuration.toml leaves out, and
// the whole configuration when no file exists. They follow Kata's QEMU configuration
// (src/runtime/Makefile, config-settings.go.in) except where docs/configuration.md says otherwise.

import type { RuntimeConfig } from "./types.js";

/** Files tried in order when no --config is given (Kata: /etc/kata-containers, /usr/share/defaults/kata-containers). */
export const defaultConfigSearchPaths: readonly string[] = [
  "/etc/kata-ts/configuration.toml",
  "/usr/share/defaults/kata-ts/configuration.toml",
];

/** Directory beside the chosen configuration file whose *.toml files are merged over it. */
export const dropInDirName = "config.d";

/** The LoadedConfig.source when no configuration file exists. */
export const builtInSource = "built-in defaults";

// Kept equal to image/guest-image.ts defaultImageDir + image/manifest.ts file names (checked by a test):
// config/ sits below image/ and must not import it.
const imageDir = "/var/cache/kata-ts/image";

/** `kata-containers.target`: the unit Kata's guest images boot to (config-settings.go.in systemdUnitName). */
export const systemdUnitName = "kata-containers.target";

/** Kata's KVM limit for amd64 (govmm MaxVCPUs); also bounds what an annotation may ask for. */
export const maxVcpus = 240;

/** Below this the guest kernel plus agent do not fit (Kata's floor is 256 MiB; our initrd needs less). */
export const minMemoryMiB = 128;

/** The 9p client refuses a smaller msize (net/9p/client.c). */
export const minMsize9p = 4096;

/**
 * The 9p client lowers a larger msize to its transport's maximum (virtio: a few hundred KiB to a few MiB,
 * by kernel version), so a larger value can only be a mistake; it also keeps the mount option an int.
 */
export const maxMsize9p = 4 << 20;
/** QEMU's own TCG buffer default; more would only reserve address space. */
export const maxTcgTbSizeMiB = 1024;

/** Kata caps cold-plugged PCI bridges at 5 (katautils maxPCIBridges). */
export const maxBridges = 5;

/**
 * The longest timeout a configuration key may set: a day. A Node timer fires at once when asked for more
 * than 2^31-1 ms (about 24.8 days), and callers add timeouts up (a create waits for the dial, then for
 * CreateContainer), so each stays far below that.
 */
export const maxTimeoutMs = 86_400_000;

export const defaultConfig: RuntimeConfig = {
  hypervisor: {
    path: "/usr/bin/qemu-system-x86_64",
    kernel: `${imageDir}/vmlinux`,
    initrd: `${imageDir}/initrd.img`,
    image: "",
    // Kata: q35. Under TCG microvm boots ~0.4 s faster (feasibility: median 2104 ms vs 2493 ms with
    // the same kernel and command line); it has no hot-plug, so q35 is the choice when devices come later.
    machineType: "microvm",
    kernelParams: [],
    firmware: "",
    defaultVcpus: 1,
    defaultMaxVcpus: 0,
    defaultMemoryMiB: 2048,
    defaultMaxMemoryMiB: 0,
    memorySlots: 10,
    defaultBridges: 1,
    // Kata: virtio-scsi. Our QEMU planner attaches disks as virtio-blk, and microvm has no SCSI controller.
    blockDeviceDriver: "virtio-blk",
    sharedFs: "virtio-9p",
    // Kata: 8192. kata-ts has run with 256 KiB since the walking skeleton; 8 KiB splits every read of the
    // container rootfs into 8 KiB round trips through QEMU.
    msize9p: 262144,
    reclaimGuestFreedMemory: false,
    // QEMU's 1 GiB only grows (kept code is never given back): 256 MiB bounds a busy pod's TCG memory at no
    // measured start cost (a boot and 300 execs: 128 and 256 as fast as 1 GiB; 64: +10 %, 32: +40 %).
    tcgTbSizeMiB: 256,
    enableDebug: false,
    disableNestingChecks: false,
    // Kata's Makefile enables ["enable_iommu", "kernel_params", "kernel_verity_params"]; kata-ts enables none:
    // a pod may change the VM only where the operator says so.
    enableAnnotations: [],
    validHypervisorPaths: [],
    validKernelPaths: [],
    validInitrdPaths: [],
    validImagePaths: [],
  },
  agent: {
    enableDebug: false,
    enableTracing: false,
    kernelModules: [],
    debugConsoleEnabled: false,
    dialTimeoutMs: 45_000,
    requestTimeoutMs: 30_000,
  },
  runtime: {
    enableDebug: false,
    enableTracing: false,
    tracingExporter: { kind: "none" },
    internetworkingModel: "tcfilter",
    disableNewNetns: false,
    sandboxCgroupOnly: true,
    // Kata's default (its shipped configuration.toml and katautils): the VM is the isolation boundary.
    disableGuestSeccomp: true,
    experimental: [],
    enablePprof: false,
    createContainerTimeoutMs: 60_000,
  },
  factory: {
    enableTemplate: false,
    // Kata: /run/vc/vm/template and /var/run/kata-containers/cache.sock; ours do not collide with a Kata install.
    templatePath: "/run/kata-ts/vm/template",
    vmCacheNumber: 0,
    vmCacheEndpoint: "/run/kata-ts/cache.sock",
  },
};
