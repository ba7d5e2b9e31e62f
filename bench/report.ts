// A benchmark's section in docs/benchmarks.md lives between markers, so each benchmark rewrites only
// its own; raw samples go to bench-results/ (not committed).

import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { ignoreErrno } from "../src/base/errors.js";

export function benchDate(): string {
  return new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

/** Replaces the `key` section of the document (appending it under `title` the first time). */
export async function writeSection(docPath: string, key: string, title: string, section: string): Promise<void> {
  const doc = (await readFile(docPath, "utf8").catch(ignoreErrno("ENOENT"))) ?? "# Benchmarks\n";
  const begin = `<!-- bench:${key}:begin -->`;
  const end = `<!-- bench:${key}:end -->`;
  const block = `${begin}\n${section}\n${end}`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  const next =
    i >= 0 && j > i
      ? doc.slice(0, i) + block + doc.slice(j + end.length)
      : `${doc.trimEnd()}\n\n## ${title}\n\n${block}\n`;
  await writeFile(docPath, next);
}

export async function writeRaw(rawDir: string, name: string, data: unknown): Promise<void> {
  await mkdir(rawDir, { recursive: true });
  await writeFile(path.join(rawDir, `${name}-${Date.now()}.json`), JSON.stringify(data, null, 2));
}

/** PSS of a process in KiB (/proc/<pid>/smaps_rollup): its share of the memory it maps. */
export async function pssKiB(pid: number): Promise<number> {
  const m = /^Pss:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/smaps_rollup`, "utf8"));
  if (m?.[1] === undefined) throw new Error(`no Pss in /proc/${pid}/smaps_rollup`);
  return Number(m[1]);
}
