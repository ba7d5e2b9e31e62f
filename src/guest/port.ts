// The agent's end of the host channel: a virtio-serial port, found by name through sysfs (there is no
// udev in the guest, so no /dev/virtio-ports/<name>), opened once read/write (ports are exclusive).

import { constants as fsc, openSync, closeSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { Code, KataError, errnoOf } from "../base/errors.js";

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

interface PipeHandle {
  open(fd: number): number;
}
interface PipeWrap {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number };
}

function pipeWrap(): PipeWrap {
  // CAST: process.binding is deprecated and untyped, but still the only way to give libuv an fd of a
  // character device as a pollable stream: net.Socket({fd}) refuses char devices (uv_guess_handle says
  // FILE), and fs streams would park a thread-pool thread in read(2) forever.
  const binding = (process as unknown as { binding(name: string): unknown }).binding("pipe_wrap");
  if (typeof binding !== "object" || binding === null || !("Pipe" in binding) || !("constants" in binding)) {
    throw new KataError(Code.Internal, "pipe_wrap binding is not available in this node");
  }
  // CAST: shape checked above; the binding is part of node itself.
  return binding as PipeWrap;
}

/**
 * Opens the port as a net.Socket. When the host side is not connected the kernel reports hangup, which
 * arrives as an immediate end of stream: the caller reopens after a pause.
 */
export function openPort(devicePath: string): net.Socket {
  const fd = openSync(devicePath, fsc.O_RDWR | fsc.O_NONBLOCK);
  const { Pipe, constants } = pipeWrap();
  const handle = new Pipe(constants.SOCKET);
  const rc = handle.open(fd);
  if (rc !== 0) {
    closeSync(fd);
    throw new KataError(Code.Internal, `open ${devicePath} as a stream: libuv error ${rc}`);
  }
  // CAST: net.Socket accepts a libuv stream handle; the option is undocumented in @types/node.
  return new net.Socket({ handle, readable: true, writable: true } as unknown as net.SocketConstructorOpts);
}
