// A pollable stream over any file descriptor that epoll accepts (a character device such as a
// virtio-serial port or a terminal, a fifo, a pipe). Node refuses character devices in net.Socket
// (uv_guess_handle says FILE), its tty.ReadStream reopens a terminal and leaves the fd it was given
// open, and fs streams would park a thread-pool thread in read(2) until input comes.

import { closeSync } from "node:fs";
import net from "node:net";
import { Code, KataError } from "../base/errors.js";

interface PipeHandle {
  open(fd: number): number;
}
interface PipeWrap {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number };
}

function pipeWrap(): PipeWrap {
  // CAST: process.binding is deprecated and untyped, but still the only way to hand libuv an fd of a
  // character device as a stream.
  const binding = (process as unknown as { binding(name: string): unknown }).binding("pipe_wrap");
  if (typeof binding !== "object" || binding === null || !("Pipe" in binding) || !("constants" in binding)) {
    throw new KataError(Code.Internal, "pipe_wrap binding is not available in this node");
  }
  // CAST: shape checked above; the binding is part of node itself.
  return binding as PipeWrap;
}

/** Wraps `fd` (opened O_NONBLOCK) in a net.Socket that owns it: destroying the socket closes the fd. */
export function streamFromFd(fd: number, opts: { readable: boolean; writable: boolean }, what: string): net.Socket {
  const { Pipe, constants } = pipeWrap();
  const handle = new Pipe(constants.SOCKET);
  const rc = handle.open(fd);
  if (rc !== 0) {
    closeSync(fd);
    throw new KataError(Code.Internal, `open ${what} as a stream: libuv error ${rc}`);
  }
  // CAST: net.Socket accepts a libuv stream handle; the option is undocumented in @types/node.
  return new net.Socket({ handle, ...opts } as unknown as net.SocketConstructorOpts);
}
