// A sandbox id goes into unix socket paths under --root (the service's, the VM's), and a socket path
// must fit sun_path. Checked before anything starts: otherwise a long id fails only once the service or
// QEMU tries to listen, after the sandbox was half made.

import path from "node:path";
import { Code, KataError } from "../base/errors.js";
import { maxUnixPathBytes } from "../platform/unix-socket.js";
import { StateStore, vmDirOf } from "./persist.js";

/** Every unix socket path of a sandbox: its service's, then its VM's (`vmSocketNames` in the VM directory). */
export function sandboxSocketPaths(root: string, sandboxId: string, vmSocketNames: readonly string[]): string[] {
  const vmDir = vmDirOf(root, sandboxId);
  return [new StateStore(root).socketPath(sandboxId), ...vmSocketNames.map((n) => path.join(vmDir, n))];
}

/**
 * Throws INVALID_ARGUMENT naming the id, its length and the longest id this --root allows, when one of
 * the sandbox's socket paths would be longer than sun_path holds.
 */
export function checkSandboxSockets(root: string, sandboxId: string, vmSocketNames: readonly string[]): void {
  const paths = sandboxSocketPaths(root, sandboxId, vmSocketNames);
  const idBytes = Buffer.byteLength(sandboxId);
  const longest = paths.reduce((a, b) => (Buffer.byteLength(b) > Buffer.byteLength(a) ? b : a));
  const longestBytes = Buffer.byteLength(longest);
  if (longestBytes <= maxUnixPathBytes) return;
  const maxId = maxUnixPathBytes - (longestBytes - idBytes);
  const fix =
    maxId < 2
      ? `--root ${root} is too long for any sandbox id: use a shorter --root`
      : `use a sandbox id of at most ${maxId} bytes with this --root, or a shorter --root`;
  throw new KataError(
    Code.InvalidArgument,
    `sandbox id ${sandboxId} is ${idBytes} bytes: its socket ${longest} would be ${longestBytes} bytes, ` +
      `more than a unix socket path holds (${maxUnixPathBytes}): ${fix}`,
    { details: { sandboxId, idBytes, maxIdBytes: Math.max(0, maxId), root } },
  );
}
