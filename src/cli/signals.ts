// Signal names as the OCI CLI accepts them: "KILL", "SIGKILL", "sigkill" or a number.

import { constants } from "node:os";
import { Code, KataError } from "../base/errors.js";

export function parseSignal(s: string): number {
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    if (n >= 1 && n <= 64) return n;
  } else {
    const name = s.toUpperCase().startsWith("SIG") ? s.toUpperCase() : `SIG${s.toUpperCase()}`;
    const n = (constants.signals as Record<string, number | undefined>)[name];
    if (n !== undefined) return n;
  }
  throw new KataError(Code.InvalidArgument, `unknown signal ${JSON.stringify(s)}`);
}
