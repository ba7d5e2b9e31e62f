// Loading an OCI bundle from disk: the directory, its config.json, and the rootfs it names. Every
// error names the path and what is wrong with it.

import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { Code, KataError, errnoOf } from "../base/errors.js";
import { jsonErrorOffset } from "./json-position.js";
import { parseSpec } from "./parse-spec.js";
import type { Spec } from "./spec.js";

/** config.json larger than this is refused before parsing (a spec is a few KiB). */
export const maxConfigBytes = 4 << 20;

export interface Bundle {
  /** Absolute bundle directory. */
  readonly dir: string;
  readonly spec: Spec;
  /** Absolute rootfs directory (root.path resolved against the bundle). */
  readonly rootfs: string;
}

async function statOrNull(p: string): Promise<import("node:fs").Stats | null> {
  try {
    return await stat(p);
  } catch (e) {
    if (errnoOf(e) === "ENOENT" || errnoOf(e) === "ENOTDIR") return null;
    throw e;
  }
}

/** "line 3, column 7" for a character offset in `text`. */
export function positionOf(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  const column = offset - before.lastIndexOf("\n");
  return `line ${line}, column ${column}`;
}

/** Parses config.json text; a syntax error says where, and JSON.parse's own words are its cause. */
export function parseConfigJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    // JSON.parse names the position in its message text for some errors only: find it ourselves.
    // Where JSON.parse and our scan disagree (they should not), the end of the text is the best guess.
    const offset = jsonErrorOffset(text) ?? text.length;
    throw new KataError(Code.InvalidArgument, `${file} is not valid JSON at ${positionOf(text, offset)}`, { cause: e });
  }
}

export async function loadBundle(bundleDir: string): Promise<Bundle> {
  const dir = path.resolve(bundleDir);
  const st = await statOrNull(dir);
  if (st === null) throw new KataError(Code.NotFound, `bundle ${dir} does not exist`);
  if (!st.isDirectory()) throw new KataError(Code.InvalidArgument, `bundle ${dir} is not a directory`);
  const configPath = path.join(dir, "config.json");
  const cst = await statOrNull(configPath);
  if (cst === null) throw new KataError(Code.NotFound, `bundle ${dir} has no config.json`);
  if (!cst.isFile()) throw new KataError(Code.InvalidArgument, `${configPath} is not a regular file`);
  if (cst.size > maxConfigBytes) {
    throw new KataError(Code.InvalidArgument, `${configPath} is ${cst.size} bytes, more than ${maxConfigBytes}`);
  }
  const spec = parseSpec(parseConfigJson(await readFile(configPath, "utf8"), configPath), configPath);
  // CAST: parseSpec guarantees root.path.
  const rootfs = path.resolve(dir, (spec.root as { path: string }).path);
  const rst = await statOrNull(rootfs);
  if (rst === null) throw new KataError(Code.NotFound, `rootfs ${rootfs} (root.path in ${configPath}) does not exist`);
  if (!rst.isDirectory()) throw new KataError(Code.InvalidArgument, `rootfs ${rootfs} is not a directory`);
  return { dir, spec, rootfs };
}
