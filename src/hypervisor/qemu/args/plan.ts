// The QEMU planner: validates a VM's configuration and puts its command line together from the switch
// builders (switches.ts), in the order QEMU needs. Pure: paths are checked for shape, never touched.

import { Buffer } from "node:buffer";
import { isAbsolute } from "node:path";
import { Code, KataError } from "../../../base/errors.js";
import { maxTcgTbSizeMiB } from "../../../config/defaults.js";
import { maxUnixPathBytes } from "../../../platform/unix-socket.js";
import { agentPortName } from "../../../protocol/guest-paths.js";
import type { VmNic, VmSpec } from "../../hypervisor.js";
import {
  append,
  bios,
  blockdevRawFile,
  chardevSocket,
  accelerator,
  cpu,
  deviceVirtio9p,
  deviceVirtioBalloon,
  deviceVirtioBlk,
  deviceVirtioNet,
  deviceVirtioSerial,
  deviceVirtserialport,
  displayNone,
  fsdevLocal,
  incoming,
  initrd,
  kernel,
  m,
  machine,
  netdevTap,
  noReboot,
  nodefaults,
  noUserConfig,
  objectMemoryBackendFile,
  pidfile,
  qmp,
  serial,
  smp,
  toArgv,
  virtioTransport,
  type Accel,
  type QemuSwitch,
} from "./switches.js";

/**
 * What planQemuArgs needs: the VM's shape from VmSpec, with the boot source, the kernel command line and every
 * host path already decided by the driver. readonlyDisks come after the root image, each read-only for the
 * same reason as the image, and raw: their format is never probed.
 */
export interface QemuVmConfig extends Pick<
  VmSpec,
  "machineType" | "vcpus" | "memoryMiB" | "hotplug" | "kernelPath" | "readonlyDisks"
> {
  readonly accel: Accel;
  /** "host" with kvm, "max" with tcg (the caller decides). */
  readonly cpuModel: string;
  /** Exactly one of initrdPath / imagePath. */
  readonly initrdPath?: string;
  /** Root image, always attached read-only (CVE-2020-2023/2025: the guest must not write the shared image). */
  readonly imagePath?: string;
  /** Already assembled by the caller (see fastKernelParams). */
  readonly kernelParams: string;
  /** QEMU listens here (server=on,wait=off) for the reader of the guest serial console (ttyS0). */
  readonly consoleSocketPath: string;
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
  /** NICs on existing taps (see VmNic), in the order the guest numbers them. */
  readonly nics?: readonly VmNic[];
  /** TCG only: the translated-code buffer, MiB (QEMU's default: 1 GiB, kept once touched). */
  readonly tcgTbSizeMiB?: number;
  /** A free-page-reporting balloon: the guest's freed memory goes back to the host. */
  readonly freePageReporting?: boolean;
}

/** Ids of the backends and frontends the planner creates; the driver uses them in QMP commands. */
export const qemuIds = {
  console: "console",
  agent: "agent",
  /** The agent's virtserialport: QMP VSERPORT_CHANGE events name it. */
  agentPort: "agentport",
  virtioSerial: "vs0",
  fsdev: "fs0",
  image: "image0",
  imageDevice: "blk0",
  memory: "mem0",
  balloon: "balloon0",
} as const;

/** Netdev and device ids of nics[i]. */
export function nicIds(i: number): { readonly netdev: string; readonly device: string } {
  return { netdev: `net${i}`, device: `nic${i}` };
}

/** Block node and device ids of readonlyDisks[i]. */
export function readonlyDiskIds(i: number): { readonly node: string; readonly device: string } {
  return { node: `rodisk${i}`, device: `roblk${i}` };
}

/** ACPI_MAX_RAM_SLOTS: QEMU refuses more DIMM slots. */
const maxMemorySlots = 256;
/** QEMU 7.2: "mount tag ... is longer than maximum (31 bytes)". */
const maxMountTagBytes = 31;
/** IFNAMSIZ - 1: the longest interface name the kernel takes. */
const maxIfNameBytes = 15;
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
  const h = c.hotplug;
  if (h !== undefined) {
    if (c.machineType !== "q35") issues.push(`hotplug: ${c.machineType} has no CPU or memory hotplug (q35 has)`);
    if (!Number.isInteger(h.maxVcpus) || h.maxVcpus < c.vcpus)
      issues.push(`hotplug.maxVcpus: ${h.maxVcpus} is not an integer >= vcpus (${c.vcpus})`);
    if (!Number.isInteger(h.memorySlots) || h.memorySlots < 0 || h.memorySlots > maxMemorySlots)
      issues.push(`hotplug.memorySlots: ${h.memorySlots} is not an integer in 0..${maxMemorySlots}`);
    if (!Number.isInteger(h.maxMemoryMiB) || h.maxMemoryMiB < c.memoryMiB)
      issues.push(`hotplug.maxMemoryMiB: ${h.maxMemoryMiB} is not an integer >= memoryMiB (${c.memoryMiB})`);
    if (h.memorySlots === 0 && h.maxMemoryMiB !== c.memoryMiB)
      issues.push("hotplug.maxMemoryMiB: must equal memoryMiB without memory slots");
  }
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
  socket("consoleSocketPath", c.consoleSocketPath);
  socket("qmpSocketPath", c.qmpSocketPath);
  socket("agentSocketPath", c.agentSocketPath);
  path("sharedDir.path", c.sharedDir?.path);
  if (c.sharedDir !== undefined) {
    const n = Buffer.byteLength(c.sharedDir.mountTag);
    if (n < 1 || n > maxMountTagBytes) issues.push(`sharedDir.mountTag: ${n} bytes, must be 1..${maxMountTagBytes}`);
  }
  const taps = new Set<string>();
  const macs = new Set<string>();
  for (const [i, n] of (c.nics ?? []).entries()) {
    const bytes = Buffer.byteLength(n.tapName);
    if (bytes < 1 || bytes > maxIfNameBytes)
      issues.push(`nics[${i}].tapName: ${bytes} bytes, must be 1..${maxIfNameBytes}`);
    // "," and "=" would split QEMU's option list however they are escaped in a kernel interface name.
    if (/[/,=\s]/.test(n.tapName))
      issues.push(`nics[${i}].tapName: ${JSON.stringify(n.tapName)} has "/", ",", "=" or a space`);
    if (taps.has(n.tapName)) issues.push(`nics[${i}].tapName: ${n.tapName} is used twice`);
    taps.add(n.tapName);
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(n.mac)) {
      issues.push(`nics[${i}].mac: ${JSON.stringify(n.mac)} is not a MAC address (six hex pairs with colons)`);
    } else if ((parseInt(n.mac.slice(0, 2), 16) & 1) === 1 || /^(00:){5}00$/.test(n.mac)) {
      issues.push(`nics[${i}].mac: ${n.mac} is not a unicast address`);
    }
    if (macs.has(n.mac.toLowerCase())) issues.push(`nics[${i}].mac: ${n.mac} is used twice`);
    macs.add(n.mac.toLowerCase());
  }
  path("memoryBackend.memPath", c.memoryBackend?.memPath);
  path("pidfilePath", c.pidfilePath);
  path("firmware", c.firmware);
  const tb = c.tcgTbSizeMiB;
  if (tb !== undefined && (!Number.isInteger(tb) || tb < 1 || tb > maxTcgTbSizeMiB)) {
    issues.push(`tcgTbSizeMiB: ${tb} is not an integer in 1..${maxTcgTbSizeMiB}`);
  }
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

  // -machine accel= unless TCG options need -accel (QEMU refuses both).
  const tbSize = config.accel === "tcg" ? config.tcgTbSizeMiB : undefined;
  s.push(
    machine({
      type: config.machineType,
      ...(tbSize === undefined ? { accel: config.accel } : {}),
      ...(config.memoryBackend === undefined ? {} : { memoryBackend: ids.memory }),
    }),
    ...(tbSize === undefined ? [] : [accelerator(config.accel, { tbSizeMiB: tbSize })]),
    cpu(config.cpuModel),
    smp(config.vcpus, config.hotplug?.maxVcpus),
    m(
      config.memoryMiB,
      config.hotplug === undefined || config.hotplug.memorySlots === 0
        ? undefined
        : { slots: config.hotplug.memorySlots, maxMemMiB: config.hotplug.maxMemoryMiB },
    ),
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

  // A socket, not a file: QEMU would append to a file without bound; the driver reads the socket and keeps a
  // capped log (console-log.ts). wait=off lets QEMU start without a reader; it drops console output while none
  // is connected, and the driver connects as soon as the socket exists, before the guest kernel runs.
  s.push(
    chardevSocket({ id: ids.console, path: config.consoleSocketPath, server: true, wait: false }),
    serial(ids.console),
  );
  s.push(qmp(config.qmpSocketPath));
  s.push(
    deviceVirtioSerial(bus, { id: ids.virtioSerial }),
    chardevSocket({ id: ids.agent, path: config.agentSocketPath, server: true, wait: false }),
    deviceVirtserialport({ id: ids.agentPort, bus: `${ids.virtioSerial}.0`, chardev: ids.agent, name: agentPortName }),
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
  for (const [i, n] of (config.nics ?? []).entries()) {
    const { netdev, device } = nicIds(i);
    s.push(
      netdevTap({ id: netdev, ifname: n.tapName }),
      deviceVirtioNet(bus, { id: device, netdev, mac: n.mac.toLowerCase() }),
    );
  }
  if (config.freePageReporting === true) s.push(deviceVirtioBalloon(bus, { id: ids.balloon }));
  if (config.pidfilePath !== undefined) s.push(pidfile(config.pidfilePath));
  if (config.incoming !== undefined) s.push(incoming(config.incoming));
  return toArgv(s);
}
