// Finds and reads configuration.toml and its drop-ins, then hands the merged document to parseConfig.
// Lookup: --config FILE (must exist), else the first existing search path (/etc/kata-ts, then
// /usr/share/defaults/kata-ts), else the built-in defaults. Drop-ins: config.d/*.toml beside the chosen
// file, in byte order of their names, each merged over what came before (see merge.ts).

import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { parse, TomlError } from "smol-toml";
import { Code, errnoOf, KataError, wrap } from "../base/errors.js";
import { builtInSource, defaultConfig, defaultConfigSearchPaths, dropInDirName } from "./defaults.js";
import { isTable, mergeLayers, type Layer, type TomlTable } from "./merge.js";
import { parseConfig } from "./parse.js";
import { formatConfigIssue, type RuntimeConfig } from "./types.js";

export interface LoadOptions {
  /** --config FILE: used as is; a missing file is an error, not a fall-through. */
  readonly configPath?: string;
  /** Tried in order when configPath is absent (tests pass temp files). */
  readonly searchPaths?: readonly string[];
}

export interface LoadedConfig {
  readonly config: RuntimeConfig;
  /** The configuration file used, or "built-in defaults". */
  readonly source: string;
  /** Drop-in files merged over `source`, in the order applied. */
  readonly dropIns: readonly string[];
  /** Kata keys kata-ts ignores, unknown keys, ignored files: each once, for the caller to log. */
  readonly warnings: readonly string[];
}

/** A configuration file larger than this is refused before it is read (Kata's is ~30 KiB). */
const maxConfigFileBytes = 1 << 20;

/** The text of `file`, or undefined when it does not exist. */
async function readIfExists(file: string): Promise<string | undefined> {
  try {
    const st = await stat(file);
    if (st.isFile() && st.size > maxConfigFileBytes) {
      throw new KataError(
        Code.InvalidArgument,
        `configuration file ${file} is ${st.size} bytes, more than ${maxConfigFileBytes}`,
      );
    }
    return await readFile(file, "utf8");
  } catch (e) {
    // ENOTDIR: a path component is a file, so this file cannot exist either.
    if (e instanceof KataError) throw e;
    if (errnoOf(e) === "ENOENT" || errnoOf(e) === "ENOTDIR") return undefined;
    if (errnoOf(e) === "EISDIR") throw new KataError(Code.InvalidArgument, `configuration file ${file} is a directory`);
    throw wrap(e, `read configuration file ${file}`);
  }
}

async function chooseFile(opts: LoadOptions): Promise<{ file: string; text: string } | undefined> {
  if (opts.configPath !== undefined) {
    const text = await readIfExists(opts.configPath);
    if (text === undefined) {
      throw new KataError(Code.NotFound, `configuration file ${opts.configPath} does not exist`);
    }
    return { file: opts.configPath, text };
  }
  for (const file of opts.searchPaths ?? defaultConfigSearchPaths) {
    const text = await readIfExists(file);
    if (text !== undefined) return { file, text };
  }
  return undefined;
}

/** Byte order of names, as Kata (Rust sort of OsString; Go os.ReadDir), not the locale's. */
function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function readDropIns(
  dir: string,
  problems: string[],
  warnings: string[],
): Promise<{ file: string; text: string }[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort(byName);
  } catch (e) {
    if (errnoOf(e) === "ENOENT" || errnoOf(e) === "ENOTDIR") return [];
    throw wrap(e, `read drop-in directory ${dir}`);
  }
  const out: { file: string; text: string }[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    if (!name.endsWith(".toml")) {
      // Kata reads every file in config.d; kata-ts skips editor and package-manager leftovers, but says so.
      warnings.push(`${file}: ignored (drop-in files must end in .toml)`);
      continue;
    }
    // stat follows symlinks: a link to a file is a drop-in, as in Kata.
    const st = await stat(file).catch((e: unknown) => {
      if (errnoOf(e) === "ENOENT") return undefined;
      throw wrap(e, `read drop-in ${file}`);
    });
    if (st === undefined) {
      problems.push(`${file}: dangling symbolic link`);
      continue;
    }
    if (!st.isFile()) {
      problems.push(`${file}: not a regular file`);
      continue;
    }
    const text = await readIfExists(file);
    if (text !== undefined) out.push({ file, text });
  }
  return out;
}

/**
 * Kata's configuration nests two levels ([hypervisor.qemu] key). smol-toml bounds inline nesting but not
 * dotted keys or table headers ("a.a.a...a = 1"), and merging walks tables recursively: a few thousand
 * levels overflowed the stack.
 */
export const maxTomlDepth = 32;

/** True when tables and arrays in `doc` nest deeper than `max` levels (`doc` itself is level 1). */
function nestedDeeper(doc: TomlTable, max: number): boolean {
  const stack: { v: unknown; depth: number }[] = [{ v: doc, depth: 1 }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (item.depth > max) return true;
    const { v, depth } = item;
    const children = Array.isArray(v) ? v : isTable(v) ? Object.values(v) : [];
    for (const c of children) if (Array.isArray(c) || isTable(c)) stack.push({ v: c, depth: depth + 1 });
  }
  return false;
}

/** Parses one file's TOML; a syntax error becomes "<file>:<line>:<column>: invalid TOML: <what>". */
export function parseToml(file: string, text: string, problems: string[]): Layer | undefined {
  let doc: TomlTable;
  try {
    // "throw" refuses __proto__/constructor keys, which would otherwise reach plain objects during merging.
    doc = parse(text, { unsafeKeyBehaviour: "throw" });
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    const what = (e.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
    problems.push(`${file}:${e.line}:${e.column}: invalid TOML: ${what}`);
    return undefined;
  }
  if (nestedDeeper(doc, maxTomlDepth)) {
    problems.push(`${file}: invalid TOML: tables or arrays nested deeper than ${maxTomlDepth} levels`);
    return undefined;
  }
  return { file, doc };
}

function invalid(problems: readonly string[]): KataError {
  const message =
    problems.length === 1
      ? `invalid configuration: ${problems[0] ?? ""}`
      : `invalid configuration (${problems.length} problems):\n  ${problems.join("\n  ")}`;
  return new KataError(Code.InvalidArgument, message, { details: { problems: problems.length } });
}

/**
 * Loads the runtime configuration. Throws NOT_FOUND for a missing --config file, INVALID_ARGUMENT listing
 * every problem (TOML syntax in any file first; otherwise every bad key), and the read error for an
 * unreadable file.
 */
export async function loadConfig(opts: LoadOptions = {}): Promise<LoadedConfig> {
  const main = await chooseFile(opts);
  if (main === undefined) return { config: defaultConfig, source: builtInSource, dropIns: [], warnings: [] };

  const problems: string[] = [];
  const warnings: string[] = [];
  const dropIns = await readDropIns(path.join(path.dirname(main.file), dropInDirName), problems, warnings);
  const layers = [main, ...dropIns].flatMap((f) => parseToml(f.file, f.text, problems) ?? []);
  // After a syntax error the merged document would be missing that file's keys, so checking the rest
  // could only report problems that are not there.
  if (problems.length > 0) throw invalid(problems);

  const parsed = parseConfig(mergeLayers(layers));
  warnings.push(...parsed.warnings);
  if (!parsed.ok) throw invalid(parsed.issues.map(formatConfigIssue));
  return { config: parsed.config, source: main.file, dropIns: dropIns.map((d) => d.file), warnings };
}
