// Opening a process's stdio paths on the host: containerd's fifos, a caller's /proc/<pid>/fd/N, or files.

import {
  constants as fsc,
  createReadStream,
  createWriteStream,
  fstatSync,
  open as openCb,
  type WriteStream,
} from "node:fs";
import type { Readable } from "node:stream";
import { isatty } from "node:tty";
import { streamFromFd } from "../platform/fd-stream.js";

/**
 * Opens a process's stdin source. A terminal, fifo or pipe is read through the event loop: a
 * thread-pool read(2) on one would block until input comes, and keep the process from ever exiting.
 * A regular file (or /dev/null) is read the ordinary way.
 */
export async function openReader(p: string): Promise<Readable> {
  // A raw fd, not a FileHandle: the streams below own it (a FileHandle would close it when collected).
  const fd = await new Promise<number>((resolve, reject) => {
    openCb(p, fsc.O_RDONLY | fsc.O_NONBLOCK, (e, n) => {
      if (e === null) resolve(n);
      else reject(e);
    });
  });
  const st = fstatSync(fd);
  if (st.isFIFO() || st.isSocket() || (st.isCharacterDevice() && isatty(fd))) {
    return streamFromFd(fd, { readable: true, writable: false }, p).pause();
  }
  return createReadStream("", { fd }).pause();
}

export function openWriter(p: string): Promise<WriteStream> {
  return new Promise((resolve, reject) => {
    // Append, never truncate: /proc/<pid>/fd/1 of a caller may be a file it redirected to.
    const w = createWriteStream(p, { flags: "a" });
    w.once("open", () => {
      resolve(w);
    });
    w.once("error", reject);
  });
}
