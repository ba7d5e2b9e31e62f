// Container, sandbox and exec ids are used in host paths: they are checked once, at the edge, before
// any filesystem access (kata#1520), and trusted from then on.

import { Code, KataError } from "./errors.js";

/**
 * runc's characters (letters, digits, `_ + - .`), any length from one. Unlike runc, an id may not start
 * with `-` or `.`: it is passed as an argument to crun in the guest (`-rf` would be an option) and names
 * files (`.` and `..` would be directories).
 */
const idPattern = /^[a-zA-Z0-9_+][a-zA-Z0-9_+.-]*$/;

/**
 * Every id is one path component somewhere (<root>/sbs/<sid>, <root>/containers-mapping/<cid>, the
 * guest's /run/crun/<cid> and exec-<execId>.json), and a component holds NAME_MAX (255) bytes. The
 * longest name built around an id is a shared file's "<cid>-<16 hex>-<basename>" (storage/plan.ts,
 * which shortens the basename to fit): 18 bytes besides the id. A sandbox id is also bounded by the
 * unix sockets under --root (sandbox/socket-paths.ts), which is usually tighter.
 */
export const maxIdLength = 255 - 18;

/** Throws INVALID_ARGUMENT naming `what` unless `id` is a valid container/sandbox/exec id. */
export function checkId(what: string, id: string): string {
  if (id.length > maxIdLength) {
    throw new KataError(
      Code.InvalidArgument,
      `invalid ${what} ${JSON.stringify(id.slice(0, 80))}...: it is ${id.length} characters, more than ${maxIdLength}`,
    );
  }
  if (!idPattern.test(id)) {
    throw new KataError(
      Code.InvalidArgument,
      `invalid ${what} ${JSON.stringify(id.slice(0, 80))}: must match ${idPattern.source}`,
    );
  }
  return id;
}
