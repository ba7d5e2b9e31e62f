// What identifies a built image: the hash of everything that goes into it, and manifest.json, which
// records that hash next to the outputs (plus a stat-keyed cache of source file hashes).

import { createHash } from "node:crypto";
import { Code, KataError } from "../base/errors.js";

/** Where `kata-ts image build` puts the guest image, and where the runtime looks for it by default. */
export const defaultImageDir = "/var/cache/kata-ts/image";

/** Bump when the builder's output changes for equal inputs (layout, stripping, cpio or erofs details). */
export const imageFormatVersion = 2;

export const manifestFileName = "manifest.json";
export const kernelFileName = "vmlinux";
export const initrdFileName = "initrd.img";
/** The read-only erofs disk with node, crun and their libraries (see layout.ts). */
export const toolsDiskFileName = "tools.erofs";
/** Every file a complete image has next to its manifest. */
export const imageFileNames = [kernelFileName, initrdFileName, toolsDiskFileName] as const;

export interface HashInputs {
  readonly kernelPackage: string;
  readonly kernelVersion: string;
  readonly modules: readonly string[];
  /**
   * role ("busybox", "node", "lib:/lib/x86_64-linux-gnu/libc.so.6", "mkfs.erofs", ...) -> sha256 of the
   * content. The builder's tools count too: another mkfs.erofs may lay the disk out differently.
   */
  readonly files: Readonly<Record<string, string>>;
  /** Generated text (/init, the inittab, the agent's launcher...), by name. */
  readonly scripts: Readonly<Record<string, string>>;
  /** Whether the image gets an agent startup snapshot (built in a VM, so not a file input). */
  readonly agentStart: AgentStartKind;
}

/** How an image starts its agent (see guestInittab). */
export type AgentStartKind = "bundle" | "snapshot";

function sortedEntries(r: Readonly<Record<string, string>>): [string, string][] {
  return Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** sha256 (hex) over the format version and every input; independent of object key order. */
export function computeInputsHash(inputs: HashInputs): string {
  const canonical = JSON.stringify([
    imageFormatVersion,
    inputs.kernelPackage,
    inputs.kernelVersion,
    [...inputs.modules],
    sortedEntries(inputs.files),
    sortedEntries(inputs.scripts),
    inputs.agentStart,
  ]);
  return createHash("sha256").update(canonical).digest("hex");
}

/**
 * The erofs volume UUID for an image: derived from its inputs hash, because mkfs.erofs otherwise picks a
 * random one and equal inputs would no longer give equal bytes.
 */
export function toolsDiskUuid(inputsHash: string): string {
  if (!/^[0-9a-f]{32,}$/.test(inputsHash)) {
    throw new KataError(Code.InvalidArgument, `inputs hash is not 32+ lower-case hex digits: ${inputsHash}`);
  }
  const h = inputsHash.slice(0, 32);
  return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20, 32)].join("-");
}

export interface SourceHash {
  readonly sizeBytes: number;
  readonly mtimeMs: number;
  readonly sha256: string;
}

export interface ImageManifest {
  readonly formatVersion: number;
  readonly inputsHash: string;
  readonly kernelRelease: string;
  readonly kernelPackage: string;
  readonly kernelVersion: string;
  readonly agentStart: AgentStartKind;
  readonly files: readonly { readonly name: string; readonly sizeBytes: number }[];
  /** host path -> content hash, reused while (size, mtime) are unchanged. */
  readonly sourceHashes: Readonly<Record<string, SourceHash>>;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseSourceHash(v: unknown): SourceHash | undefined {
  if (!isRecord(v)) return undefined;
  const { sizeBytes, mtimeMs, sha256 } = v;
  if (typeof sizeBytes !== "number" || typeof mtimeMs !== "number" || typeof sha256 !== "string") return undefined;
  return { sizeBytes, mtimeMs, sha256 };
}

/**
 * The manifest in `text`, or undefined when it is not one this builder wrote (corrupt, older format):
 * the caller then rebuilds, so a bad manifest is never an error.
 */
export function parseManifest(text: string): ImageManifest | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined; // not JSON: treated as absent, see above
  }
  if (!isRecord(v) || v["formatVersion"] !== imageFormatVersion) return undefined;
  const { inputsHash, kernelRelease, kernelPackage, kernelVersion, agentStart, files, sourceHashes } = v;
  if (typeof inputsHash !== "string" || typeof kernelRelease !== "string") return undefined;
  if (agentStart !== "bundle" && agentStart !== "snapshot") return undefined;
  if (typeof kernelPackage !== "string" || typeof kernelVersion !== "string") return undefined;
  if (!Array.isArray(files) || !isRecord(sourceHashes)) return undefined;
  const parsedFiles: { name: string; sizeBytes: number }[] = [];
  for (const f of files) {
    if (!isRecord(f) || typeof f["name"] !== "string" || typeof f["sizeBytes"] !== "number") return undefined;
    parsedFiles.push({ name: f["name"], sizeBytes: f["sizeBytes"] });
  }
  const hashes: Record<string, SourceHash> = {};
  for (const [path, h] of Object.entries(sourceHashes)) {
    const parsed = parseSourceHash(h);
    if (parsed !== undefined) hashes[path] = parsed;
  }
  return {
    formatVersion: imageFormatVersion,
    inputsHash,
    kernelRelease,
    kernelPackage,
    kernelVersion,
    agentStart,
    files: parsedFiles,
    sourceHashes: hashes,
  };
}

export function renderManifest(m: ImageManifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}
