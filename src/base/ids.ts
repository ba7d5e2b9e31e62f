// Container, sandbox and exec ids are used in host paths: they are checked once, at the edge, before
// any filesystem access (kata#1520), and trusted from then on.

import { Code, KataError } from "./errors.js";

const idPattern = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
const maxIdLength = 1024;

/** Throws INVALID_ARGUMENT naming `what` unless `id` is a valid container/sandbox/exec id. */
export function checkId(what: string, id: string): string {
  if (id.length > maxIdLength || !idPattern.test(id)) {
    throw new KataError(
      Code.InvalidArgument,
      `invalid ${what} ${JSON.stringify(id.slice(0, 80))}: must match ${idPattern.source}`,
    );
  }
  return id;
}
