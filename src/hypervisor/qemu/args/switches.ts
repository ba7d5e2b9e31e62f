// The QEMU command line as data: one pure builder per QEMU switch (plan.ts puts a VM together from them).
//
// Conventions (kata runtime-rs cmdline_generator.rs, applied to TypeScript):
// - each builder returns exactly one switch and is named after it (`-smp` -> smp, `-object
//   memory-backend-file` -> objectMemoryBackendFile); a device made of a backend and a frontend is two builders;
// - parameters keep QEMU's names in camelCase (`memPath` for `mem-path`);
// - values parsed by QEMU as `key=value,...` option lists escape a literal comma by doubling it (qemuValue);
//   switches QEMU takes verbatim (-kernel, -initrd, -append, -bios, -pidfile, -serial file:) must NOT be
//   escaped: checked on QEMU 7.2, where `-kernel 'a,,b'` looks for a file literally named `a,,b`.

import type { MachineType } from "../../../config/types.js";

export type QemuSwitch = readonly [flag: `-${string}`, value?: string];

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

/** Without `accel`, the accelerator comes from a separate accelerator() switch (QEMU refuses both). */
export function machine(opts: { type: MachineType; accel?: Accel; memoryBackend?: string }): QemuSwitch {
  const accel = opts.accel === undefined ? "" : `,accel=${opts.accel}`;
  const backend = opts.memoryBackend === undefined ? "" : `,memory-backend=${qemuValue(opts.memoryBackend)}`;
  return ["-machine", `${opts.type}${accel}${backend}`];
}

/**
 * `-accel tcg,tb-size=N`: TCG's translated-code buffer, in MiB. QEMU 7.2 reserves 1 GiB for it and keeps
 * every page it ever filled, so an idle guest's translations stay resident in QEMU for good.
 */
export function accelerator(accel: Accel, opts: { tbSizeMiB?: number } = {}): QemuSwitch {
  const tb = accel === "tcg" && opts.tbSizeMiB !== undefined ? `,tb-size=${opts.tbSizeMiB}` : "";
  return ["-accel", `${accel}${tb}`];
}

/**
 * A balloon that only reports the guest's free pages (free-page-reporting): QEMU drops them from its
 * memory, so guest memory freed after boot is given back to the host. The balloon itself never inflates.
 */
export function deviceVirtioBalloon(transport: VirtioTransport, opts: { id: string }): QemuSwitch {
  return ["-device", `${virtioDevice("virtio-balloon", transport)},id=${qemuValue(opts.id)},free-page-reporting=on`];
}

export function cpu(model: string): QemuSwitch {
  return ["-cpu", qemuValue(model)];
}

/** microvm cannot hotplug CPUs, so maxCpus defaults to cpus. */
export function smp(cpus: number, maxCpus: number = cpus): QemuSwitch {
  return ["-smp", `${cpus},maxcpus=${maxCpus}`];
}

/**
 * Guest RAM. With a machine memory-backend, QEMU 7.2 requires this to equal the backend's size. `slots` and
 * `maxMemMiB` leave room for pc-dimm hotplug (q35: ACPI memory hotplug; microvm has none).
 */
export function m(sizeMiB: number, hotplug?: { slots: number; maxMemMiB: number }): QemuSwitch {
  const room = hotplug === undefined ? "" : `,slots=${hotplug.slots},maxmem=${hotplug.maxMemMiB}M`;
  return ["-m", `${sizeMiB}M${room}`];
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

/** The first ISA serial port (ttyS0) on a chardev, e.g. one defined with chardevSocket. */
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

/**
 * A named port on a virtio-serial bus (`<serialId>.0`); the guest finds it in /sys/class/virtio-ports.
 * With an `id`, QEMU reports the guest opening and closing its end as QMP VSERPORT_CHANGE events.
 */
export function deviceVirtserialport(opts: { id?: string; bus: string; chardev: string; name: string }): QemuSwitch {
  const id = opts.id === undefined ? "" : `id=${qemuValue(opts.id)},`;
  return [
    "-device",
    `virtserialport,${id}bus=${qemuValue(opts.bus)},chardev=${qemuValue(opts.chardev)},name=${qemuValue(opts.name)}`,
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
 * A tap netdev on an existing tap device, opened by name (TUNSETIFF) in QEMU's network namespace.
 * script=no/downscript=no: the runtime made the tap and removes it; vhost=off: the host has no vhost-net.
 */
export function netdevTap(opts: { id: string; ifname: string }): QemuSwitch {
  return ["-netdev", `tap,id=${qemuValue(opts.id)},ifname=${qemuValue(opts.ifname)},script=no,downscript=no,vhost=off`];
}

/** virtio-net frontend of a netdev; `mac` is what the guest reads from /sys/class/net/<nic>/address. */
export function deviceVirtioNet(
  transport: VirtioTransport,
  opts: { id: string; netdev: string; mac: string },
): QemuSwitch {
  return [
    "-device",
    `${virtioDevice("virtio-net", transport)},netdev=${qemuValue(opts.netdev)},mac=${qemuValue(opts.mac)},id=${qemuValue(opts.id)}`,
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
