// Content hashes of host files, reusing a previous hash while a file's (size, mtime) is unchanged, so
// an up-to-date check does not read 110 MB of node, crun and libraries every time.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { wrap } from "../base/errors.js";
import type { SourceHash } from "./manifest.js";

export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      // CAST: a read stream without an encoding yields Buffers.
      h.update(chunk as Buffer);
    }
  } catch (e) {
    throw wrap(e, `hash ${path}`);
  }
  return h.digest("hex");
}

/** Hash of each of `paths` (deduplicated); `known` entries are reused when size and mtime match. */
export async function hashFiles(
  paths: readonly string[],
  known: Readonly<Record<string, SourceHash>>,
): Promise<Record<string, SourceHash>> {
  const out: Record<string, SourceHash> = {};
  for (const path of new Set(paths)) {
    let st;
    try {
      st = await stat(path);
    } catch (e) {
      throw wrap(e, `stat ${path}`);
    }
    const prev = known[path];
    out[path] =
      prev !== undefined && prev.sizeBytes === st.size && prev.mtimeMs === st.mtimeMs
        ? prev
        : { sizeBytes: st.size, mtimeMs: st.mtimeMs, sha256: await sha256File(path) };
  }
  return out;
}
