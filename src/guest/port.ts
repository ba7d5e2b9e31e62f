// The agent's end of the host channel: a virtio-serial port, found by name through sysfs (there is no
// udev in the guest, so no /dev/virtio-ports/<name>), opened once read/write (ports are exclusive).

import { constants as fsc, openSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import type net from "node:net";
import { streamFromFd } from "../platform/fd-stream.js";
import path from "node:path";
import { errnoOf } from "../base/errors.js";

/** `/dev/vportNpM` of the port named `name`, or undefined when no such port exists (yet). */
export async function findPort(name: string, sysfsDir = "/sys/class/virtio-ports"): Promise<string | undefined> {
  let entries: string[];
  try {
    entries = await readdir(sysfsDir);
  } catch (e) {
    // The directory appears only once virtio_console is loaded.
    if (errnoOf(e) === "ENOENT") return undefined;
    throw e;
  }
  for (const entry of entries.sort()) {
    const portName = await readFile(path.join(sysfsDir, entry, "name"), "utf8").catch((e: unknown) => {
      if (errnoOf(e) === "ENOENT") return "";
      throw e;
    });
    if (portName.trim() === name) return `/dev/${entry}`;
  }
  return undefined;
}

/**
 * Opens the port as a net.Socket. When the host side is not connected the kernel reports hangup, which
 * arrives as an immediate end of stream: the caller reopens after a pause.
 */
export function openPort(devicePath: string): net.Socket {
  const fd = openSync(devicePath, fsc.O_RDWR | fsc.O_NONBLOCK);
  return streamFromFd(fd, { readable: true, writable: true }, devicePath);
}
