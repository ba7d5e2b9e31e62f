// The QEMU command line as data: one pure builder per QEMU switch, and one planner that puts a VM together.
//
// Conventions (kata runtime-rs cmdline_generator.rs, applied to TypeScript):
// - each builder returns exactly one switch and is named after it (`-smp` -> smp, `-object
//   memory-backend-file` -> objectMemoryBackendFile); a device made of a backend and a frontend is two builders;
// - parameters keep QEMU's names in camelCase (`memPath` for `mem-path`);
// - values parsed by QEMU as `key=value,...` option lists escape a literal comma by doubling it (qemuValue);
//   switches QEMU takes verbatim (-kernel, -initrd, -append, -bios, -pidfile, -serial file:) must NOT be
//   escaped: checked on QEMU 7.2, where `-kernel 'a,,b'` looks for a file literally named `a,,b`.

import { Buffer } from "node:buffer";
import { isAbsolute } from "node:path";
import { Code, KataError } from "../../base/errors.js";

export type QemuSwitch = readonly [flag: `-${string}`, value?: string];

export type MachineType = "microvm" | "q35";
export type Accel = "kvm" | "tcg";
/** microvm has no PCI: its virtio devices sit on virtio-mmio (`*-device`); q35 uses `*-pci`. */
export type VirtioTransport = "mmio" | "pci";

/** QEMU option values escape a literal comma by doubling it. */
export function qemuValue(v: string): string {
  return v.replaceAll(",", ",,");
}

function onOff(b: boolean): "on" | "off" {
  return b ? "on" : "off";
}

export function virtioTransport(machineType: MachineType): VirtioTransport {
  return machineType === "microvm" ? "mmio" : "pci";
}

function virtioDevice(base: string, transport: VirtioTransport): string {
  return `${base}-${transport === "mmio" ? "device" : "pci"}`;
}

export function machine(opts: { type: MachineType; accel: Accel; memoryBackend?: string }): QemuSwitch {
  const backend = opts.memoryBackend === undefined ? "" : `,memory-backend=${qemuValue(opts.memoryBackend)}`;
  return ["-machine", `${opts.type},accel=${opts.accel}${backend}`];
}

export function cpu(model: string): QemuSwitch {
  return ["-cpu", qemuValue(model)];
}

/** microvm cannot hotplug CPUs, so maxCpus defaults to cpus. */
export function smp(cpus: number, maxCpus: number = cpus): QemuSwitch {
  return ["-smp", `${cpus},maxcpus=${maxCpus}`];
}

/** Guest RAM. With a machine memory-backend, QEMU 7.2 requires this to equal the backend's size. */
export function m(sizeMiB: number): QemuSwitch {
  return ["-m", `${sizeMiB}M`];
}

/** An uncompressed ELF vmlinux boots through its PVH entry point, skipping ~2.7 s of XZ under TCG. */
export function kernel(path: string): QemuSwitch {
  return ["-kernel", path];
}

export function initrd(path: string): QemuSwitch {
  return ["-initrd", path];
}

/** The kernel command line, passed verbatim (commas in `rootflags=a,b` stay single). */
export function append(kernelParams: string): QemuSwitch {
  return ["-append", kernelParams];
}

export function bios(path: string): QemuSwitch {
  return ["-bios", path];
}

export function chardevSocket(opts: { id: string; path: string; server: boolean; wait: boolean }): QemuSwitch {
  const mode = opts.server ? `,server=on,wait=${onOff(opts.wait)}` : "";
  return ["-chardev", `socket,id=${qemuValue(opts.id)},path=${qemuValue(opts.path)}${mode}`];
}

export function chardevFile(opts: { id: string; path: string }): QemuSwitch {
  return ["-chardev", `file,id=${qemuValue(opts.id)},path=${qemuValue(opts.path)}`];
}

/** The first ISA serial port (ttyS0) on a chardev defined with chardevFile/chardevSocket. */
export function serial(chardevId: string): QemuSwitch {
  return ["-serial", `chardev:${chardevId}`];
}

/** The QMP monitor on a unix socket QEMU listens on; wait=off so QEMU boots without a client. */
export function qmp(socketPath: string): QemuSwitch {
  return ["-qmp", `unix:${qemuValue(socketPath)},server=on,wait=off`];
}

export function deviceVirtioSerial(transport: VirtioTransport, opts: { id: string }): QemuSwitch {
  return ["-device", `${virtioDevice("virtio-serial", transport)},id=${qemuValue(opts.id)}`];
}

/** A named port on a virtio-serial bus (`<serialId>.0`); the guest finds it in /sys/class/virtio-ports. */
export function deviceVirtserialport(opts: { bus: string; chardev: string; name: string }): QemuSwitch {
  return [
    "-device",
    `virtserialport,bus=${qemuValue(opts.bus)},chardev=${qemuValue(opts.chardev)},name=${qemuValue(opts.name)}`,
  ];
}

/** 9p backend. security_model=none: files are created with QEMU's own credentials, no xattr mapping. */
export function fsdevLocal(opts: {
  id: string;
  path: string;
  securityModel: "none" | "mapped-xattr" | "passthrough";
}): QemuSwitch {
  return ["-fsdev", `local,id=${qemuValue(opts.id)},path=${qemuValue(opts.path)},security_model=${opts.securityModel}`];
}

export function deviceVirtio9p(transport: VirtioTransport, opts: { fsdev: string; mountTag: string }): QemuSwitch {
  return [
    "-device",
    `${virtioDevice("virtio-9p", transport)},fsdev=${qemuValue(opts.fsdev)},mount_tag=${qemuValue(opts.mountTag)}`,
  ];
}

/**
 * A raw image as a block node. The format is always given, so QEMU never probes the guest-controlled contents
 * (a probed "qcow2" could name a host backing file). read-only on the raw node is inherited by its file node
 * (query-named-block-nodes shows ro=true on both in QEMU 7.2).
 */
export function blockdevRawFile(opts: { nodeName: string; filename: string; readOnly: boolean }): QemuSwitch {
  return [
    "-blockdev",
    `driver=raw,node-name=${qemuValue(opts.nodeName)},read-only=${onOff(opts.readOnly)}` +
      `,file.driver=file,file.filename=${qemuValue(opts.filename)}`,
  ];
}

/**
 * virtio-blk frontend; a read-only node makes the guest see a read-only disk. `serial` is what the guest
 * reads from /sys/block/vdX/serial, so it can find a disk by name rather than by position.
 */
export function deviceVirtioBlk(
  transport: VirtioTransport,
  opts: { id: string; drive: string; serial?: string },
): QemuSwitch {
  const serial = opts.serial === undefined ? "" : `,serial=${qemuValue(opts.serial)}`;
  return [
    "-device",
    `${virtioDevice("virtio-blk", transport)},id=${qemuValue(opts.id)},drive=${qemuValue(opts.drive)}${serial}`,
  ];
}

/**
 * Guest RAM in a file, for VM templates: the template maps it share=on, clones map the same file share=off
 * (private copy-on-write) and migrate with the x-ignore-shared capability so RAM is not copied.
 */
export function objectMemoryBackendFile(opts: {
  id: string;
  memPath: string;
  sizeMiB: number;
  share: boolean;
}): QemuSwitch {
  return [
    "-object",
    `memory-backend-file,id=${qemuValue(opts.id)},size=${opts.sizeMiB}M,mem-path=${qemuValue(opts.memPath)},share=${onOff(opts.share)}`,
  ];
}

/** `defer`: wait for QMP migrate-incoming (QEMU 7.2 has no `file:` URI; use `exec:cat FILE`). */
export function incoming(uri: "defer"): QemuSwitch {
  return ["-incoming", uri];
}

/** QEMU writes and locks this file, and removes it when it exits cleanly. */
export function pidfile(path: string): QemuSwitch {
  return ["-pidfile", path];
}

export function nodefaults(): QemuSwitch {
  return ["-nodefaults"];
}

export function noUserConfig(): QemuSwitch {
  return ["-no-user-config"];
}

export function displayNone(): QemuSwitch {
  return ["-display", "none"];
}

/** A guest reboot makes QEMU exit (code 0) instead of resetting the VM. */
export function noReboot(): QemuSwitch {
  return ["-no-reboot"];
}

/** Flattens switches into an argv tail. */
export function toArgv(switches: readonly QemuSwitch[]): string[] {
  const argv: string[] = [];
  for (const [flag, value] of switches) {
    argv.push(flag);
    if (value !== undefined) argv.push(value);
  }
  return argv;
}

// ---- the planner ------------------------------------------------------------------------------------------

/** A disk image the guest may read but never write, such as the guest image's tools disk. */
export interface ReadonlyDisk {
  readonly path: string;
  /** virtio-blk serial (1..20 bytes, the virtio limit), how the guest tells the disks apart. */
  readonly serial: string;
}

export interface QemuVmConfig {
  readonly machineType: MachineType;
  readonly accel: Accel;
  /** "host" with kvm, "max" with tcg (the caller decides). */
  readonly cpuModel: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly kernelPath: string;
  /** Exactly one of initrdPath / imagePath. */
  readonly initrdPath?: string;
  /** Root image, always attached read-only (CVE-2020-2023/2025: the guest must not write the shared image). */
  readonly imagePath?: string;
  /**
   * Data disks next to the initrd or root image, attached read-only for the same reason, after the root
   * image, in order. Raw images: the format is never probed.
   */
  readonly readonlyDisks?: readonly ReadonlyDisk[];
  /** Already assembled by the caller (see fastKernelParams). */
  readonly kernelParams: string;
  /** The guest serial console (ttyS0) is written to this file. */
  readonly consoleLogPath: string;
  /** QEMU listens here (server=on,wait=off). */
  readonly qmpSocketPath: string;
  /** QEMU listens here for the virtio-serial port agentPortName, so the host can connect, close and reconnect. */
  readonly agentSocketPath: string;
  /** 9p share; the guest must not have it mounted when the VM is migrated (a mounted export blocks migration). */
  readonly sharedDir?: { readonly path: string; readonly mountTag: string };
  /** VM templates: RAM in this file; share=on for the template, share=off (copy-on-write) for clones. */
  readonly memoryBackend?: { readonly memPath: string; readonly share: boolean };
  readonly incoming?: "defer";
  readonly pidfilePath?: string;
  /** -bios, e.g. /usr/share/qemu/qboot.rom for q35 (QEMU's default firmware otherwise). */
  readonly firmware?: string;
}

/** The virtio-serial port name the guest agent looks for in /sys/class/virtio-ports/vportNpM/name. */
export const agentPortName = "agent.channel.0";

/** Ids of the backends and frontends the planner creates; the driver uses them in QMP commands. */
export const qemuIds = {
  console: "console",
  agent: "agent",
  virtioSerial: "vs0",
  fsdev: "fs0",
  image: "image0",
  imageDevice: "blk0",
  memory: "mem0",
} as const;

/** Block node and device ids of readonlyDisks[i]. */
export function readonlyDiskIds(i: number): { readonly node: string; readonly device: string } {
  return { node: `rodisk${i}`, device: `roblk${i}` };
}

/** sun_path is 108 bytes including the terminating NUL; QEMU and Node both refuse longer paths. */
const maxUnixPathBytes = 107;
/** QEMU 7.2: "mount tag ... is longer than maximum (31 bytes)". */
const maxMountTagBytes = 31;
/** VIRTIO_BLK_ID_BYTES: QEMU 7.2 refuses a longer virtio-blk serial. */
const maxBlkSerialBytes = 20;

function configIssues(c: QemuVmConfig): string[] {
  const issues: string[] = [];
  const path = (field: string, p: string | undefined): void => {
    if (p === undefined) return;
    // QEMU resolves relative paths against its own cwd, which is the spawner's: never what was meant.
    if (!isAbsolute(p)) issues.push(`${field}: not an absolute path: ${p}`);
    if (p.includes("\0")) issues.push(`${field}: contains a NUL byte`);
  };
  const socket = (field: string, p: string): void => {
    path(field, p);
    const n = Buffer.byteLength(p);
    if (n > maxUnixPathBytes) issues.push(`${field}: unix socket path is ${n} bytes, max ${maxUnixPathBytes}: ${p}`);
  };
  if ((c.initrdPath === undefined) === (c.imagePath === undefined)) {
    issues.push("initrdPath, imagePath: exactly one must be set");
  }
  if (!Number.isInteger(c.vcpus) || c.vcpus < 1) issues.push(`vcpus: not a positive integer: ${c.vcpus}`);
  if (!Number.isInteger(c.memoryMiB) || c.memoryMiB < 1)
    issues.push(`memoryMiB: not a positive integer: ${c.memoryMiB}`);
  if (c.cpuModel === "") issues.push("cpuModel: empty");
  path("kernelPath", c.kernelPath);
  path("initrdPath", c.initrdPath);
  path("imagePath", c.imagePath);
  const serials = new Set<string>();
  for (const [i, d] of (c.readonlyDisks ?? []).entries()) {
    path(`readonlyDisks[${i}].path`, d.path);
    const n = Buffer.byteLength(d.serial);
    if (n < 1 || n > maxBlkSerialBytes)
      issues.push(`readonlyDisks[${i}].serial: ${n} bytes, must be 1..${maxBlkSerialBytes}`);
    if (serials.has(d.serial)) issues.push(`readonlyDisks[${i}].serial: ${d.serial} is used twice`);
    serials.add(d.serial);
  }
  path("consoleLogPath", c.consoleLogPath);
  socket("qmpSocketPath", c.qmpSocketPath);
  socket("agentSocketPath", c.agentSocketPath);
  path("sharedDir.path", c.sharedDir?.path);
  if (c.sharedDir !== undefined) {
    const n = Buffer.byteLength(c.sharedDir.mountTag);
    if (n < 1 || n > maxMountTagBytes) issues.push(`sharedDir.mountTag: ${n} bytes, must be 1..${maxMountTagBytes}`);
  }
  path("memoryBackend.memPath", c.memoryBackend?.memPath);
  path("pidfilePath", c.pidfilePath);
  path("firmware", c.firmware);
  return issues;
}

/**
 * The full QEMU argv (without the binary) for one VM.
 * Throws INVALID_ARGUMENT naming every inconsistent field.
 */
export function planQemuArgs(config: QemuVmConfig): string[] {
  const issues = configIssues(config);
  if (issues.length > 0) {
    throw new KataError(Code.InvalidArgument, `qemu config: ${issues.join("; ")}`);
  }
  const bus = virtioTransport(config.machineType);
  const ids = qemuIds;
  const s: QemuSwitch[] = [];

  s.push(
    machine({
      type: config.machineType,
      accel: config.accel,
      ...(config.memoryBackend === undefined ? {} : { memoryBackend: ids.memory }),
    }),
    cpu(config.cpuModel),
    smp(config.vcpus),
    m(config.memoryMiB),
  );
  if (config.memoryBackend !== undefined) {
    s.push(
      objectMemoryBackendFile({
        id: ids.memory,
        memPath: config.memoryBackend.memPath,
        sizeMiB: config.memoryMiB,
        share: config.memoryBackend.share,
      }),
    );
  }
  s.push(nodefaults(), noUserConfig(), displayNone(), noReboot());
  if (config.firmware !== undefined) s.push(bios(config.firmware));
  s.push(kernel(config.kernelPath));
  if (config.initrdPath !== undefined) s.push(initrd(config.initrdPath));
  s.push(append(config.kernelParams));

  // A chardev file rather than `-serial file:PATH`: -serial's legacy syntax takes the path verbatim, so the
  // chardev keeps every path on the same (comma-doubling) escaping rule.
  s.push(chardevFile({ id: ids.console, path: config.consoleLogPath }), serial(ids.console));
  s.push(qmp(config.qmpSocketPath));
  s.push(
    deviceVirtioSerial(bus, { id: ids.virtioSerial }),
    chardevSocket({ id: ids.agent, path: config.agentSocketPath, server: true, wait: false }),
    deviceVirtserialport({ bus: `${ids.virtioSerial}.0`, chardev: ids.agent, name: agentPortName }),
  );
  if (config.imagePath !== undefined) {
    s.push(
      blockdevRawFile({ nodeName: ids.image, filename: config.imagePath, readOnly: true }),
      deviceVirtioBlk(bus, { id: ids.imageDevice, drive: ids.image }),
    );
  }
  for (const [i, d] of (config.readonlyDisks ?? []).entries()) {
    const { node, device } = readonlyDiskIds(i);
    s.push(
      blockdevRawFile({ nodeName: node, filename: d.path, readOnly: true }),
      deviceVirtioBlk(bus, { id: device, drive: node, serial: d.serial }),
    );
  }
  if (config.sharedDir !== undefined) {
    s.push(
      fsdevLocal({ id: ids.fsdev, path: config.sharedDir.path, securityModel: "none" }),
      deviceVirtio9p(bus, { fsdev: ids.fsdev, mountTag: config.sharedDir.mountTag }),
    );
  }
  if (config.pidfilePath !== undefined) s.push(pidfile(config.pidfilePath));
  if (config.incoming !== undefined) s.push(incoming(config.incoming));
  return toArgv(s);
}
