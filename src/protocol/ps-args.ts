// `kata-ts ps ID PS-OPTIONS` (runc's ps): the options go to the guest's busybox ps, exec'd without a shell.
// Host and guest both check them: they cross the task socket and the agent's port.

import { Code, KataError } from "../base/errors.js";

export const maxPsArgs = 16;
export const maxPsArgBytes = 64;
/** What ps options need (`-ef`, `-o pid,comm`, `-o pid=ID`, `%cpu`, `-o args:20`), nothing a shell or path needs. */
const psArgPattern = /^[A-Za-z0-9,=_%:-]+$/;

/** Throws INVALID_ARGUMENT naming the first bad ps option (count, size, characters). */
export function checkPsArgs(args: readonly string[]): void {
  if (args.length > maxPsArgs) {
    throw new KataError(Code.InvalidArgument, `ps options: ${args.length} given, at most ${maxPsArgs}`);
  }
  args.forEach((a, i) => {
    if (Buffer.byteLength(a) > maxPsArgBytes) {
      throw new KataError(
        Code.InvalidArgument,
        `ps option ${i + 1}: ${Buffer.byteLength(a)} bytes, at most ${maxPsArgBytes}`,
      );
    }
    if (!psArgPattern.test(a)) {
      throw new KataError(
        Code.InvalidArgument,
        `ps option ${i + 1} ${JSON.stringify(a)}: only letters, digits and - , = _ % : are allowed`,
      );
    }
  });
}

/** The index of the PID column in ps's header line; refuses output without one (e.g. `-o comm`, `-o pid=X`). */
export function psPidColumn(header: string): number {
  const i = header.trim().split(/\s+/).indexOf("PID");
  if (i < 0) {
    throw new KataError(
      Code.InvalidArgument,
      `ps output has no PID column (header ${JSON.stringify(header.trim().slice(0, 200))}): keep pid in the options`,
    );
  }
  return i;
}

/** ps's header line and the lines of the given pids, found in the PID column. */
export function keepPsRows(text: string, pids: readonly number[]): string {
  const [head = "", ...lines] = text.split("\n");
  const col = psPidColumn(head);
  const wanted = new Set(pids.map(String));
  const rows = lines.filter((l) => wanted.has(l.trim().split(/\s+/)[col] ?? ""));
  return [head, ...rows].join("\n") + "\n";
}
