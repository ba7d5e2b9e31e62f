// Where the CLI notes each container's process stand-in (see stand-in.ts), apart so that `state` and
// `list` read it without loading the process code.

import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { ignoreErrno } from "../base/errors.js";

/** Where the CLI notes a container's stand-in pid, for `state` (the service knows only its own). */
export function standInRecord(sandboxDir: string, id: string): string {
  return path.join(sandboxDir, "pids", id);
}

/** Notes the stand-in's pid (a temporary file renamed over: whole or not at all). */
export async function recordStandIn(sandboxDir: string, id: string, pid: number): Promise<void> {
  const file = standInRecord(sandboxDir, id);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(`${file}.tmp`, String(pid));
  await rename(`${file}.tmp`, file);
}

/** The noted stand-in pid of a container; undefined when none was noted (or the note is not a pid). */
export async function standInPid(sandboxDir: string, id: string): Promise<number | undefined> {
  const text = await readFile(standInRecord(sandboxDir, id), "utf8").catch(ignoreErrno("ENOENT"));
  if (text === undefined || !/^[1-9][0-9]{0,9}$/.test(text)) return undefined;
  return Number(text);
}
