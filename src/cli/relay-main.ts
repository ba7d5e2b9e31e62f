// The stdio relay of a `kata-ts create` whose caller's stdio are unix sockets: it inherited those fds,
// copies between them and the fifos the service opens, and exits when the container's outputs end.
// Argv: <fifo dir> <stdin|stdout|stderr>...

import { rm } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { pumpFifos, type StdioName } from "./stdio-bridge.js";

const [dir, ...names] = process.argv.slice(2);
if (dir === undefined) process.exit(2);
const fifos: Partial<Record<StdioName, string>> = {};
for (const n of names) {
  if (n === "stdin" || n === "stdout" || n === "stderr") fifos[n] = path.join(dir, n);
}
const pump = pumpFifos(fifos, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
// Fifos are open on our side: the CLI may now pass their paths to the service.
const ready = new net.Socket({ fd: 3, readable: false, writable: true });
ready.end("ready\n");
await pump.done;
// A stdin open the service never answered would keep a thread (and so the process) alive.
pump.close();
await rm(dir, { recursive: true, force: true });
process.exit(0);
