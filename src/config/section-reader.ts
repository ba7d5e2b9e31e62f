// Reads one TOML table ([hypervisor.qemu], [runtime], ...) key by key into typed values. A missing key
// gives the default; a bad one gives the default plus an issue naming the file, the section and the key.
// Keys nobody read become warnings: Kata keys kata-ts does not implement, or unknown keys (typos).

import { compileGlob } from "./glob.js";
import type { TomlTable } from "./merge.js";
import type { ConfigIssue } from "./types.js";

export interface ReadContext {
  readonly issues: ConfigIssue[];
  readonly warnings: string[];
  originOf(keys: readonly string[]): string;
}

/** The TOML type of a parsed value, for messages. */
export function tomlTypeName(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "float";
  if (typeof v === "string" || typeof v === "boolean") return typeof v;
  if (Array.isArray(v)) return "array";
  if (v instanceof Date) return "date-time";
  return "table";
}

function quoteAll(values: readonly string[]): string {
  return values.map((v) => JSON.stringify(v)).join(", ");
}

/** Kata-valid values kata-ts refuses: "yet" if planned, "never" otherwise (the message differs). */
export type Refused = Readonly<Record<string, "yet" | "never">>;

export class SectionReader {
  readonly #table: TomlTable;
  readonly #keys: readonly string[];
  readonly #ctx: ReadContext;
  /** Every key some reader asked for, present or not: the section's schema, for "did you mean". */
  readonly #known = new Set<string>();
  readonly #bad = new Set<string>();

  constructor(table: TomlTable, keys: readonly string[], ctx: ReadContext) {
    this.#table = table;
    this.#keys = keys;
    this.#ctx = ctx;
  }

  get section(): string {
    return `[${this.#keys.join(".")}]`;
  }

  has(key: string): boolean {
    return Object.hasOwn(this.#table, key);
  }

  /** True when `key` is absent or was read without an issue (cross-key checks only trust these). */
  ok(key: string): boolean {
    return !this.#bad.has(key);
  }

  fileOf(key: string): string {
    return this.#ctx.originOf([...this.#keys, key]);
  }

  issue(key: string, message: string, index?: number): void {
    this.#bad.add(key);
    const at = index === undefined ? key : `${key}[${index}]`;
    this.#ctx.issues.push({ file: this.fileOf(key), path: `${this.section} ${at}`, message });
  }

  /** A key read and used, but not as written: the user is told how it is taken. */
  warn(key: string, message: string): void {
    this.#ctx.warnings.push(`${this.fileOf(key)}: ${this.section} ${key}: ${message}`);
  }

  #get(key: string): unknown {
    this.#known.add(key);
    return this.has(key) ? this.#table[key] : undefined;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.#get(key);
    if (v === undefined) return dflt;
    if (typeof v === "boolean") return v;
    this.issue(key, `must be a boolean, not ${tomlTypeName(v)}`);
    return dflt;
  }

  string(key: string, dflt: string): string {
    const v = this.#get(key);
    if (v === undefined) return dflt;
    if (typeof v === "string") return v;
    this.issue(key, `must be a string, not ${tomlTypeName(v)}`);
    return dflt;
  }

  int(key: string, dflt: number, min: number, max?: number): number {
    const v = this.#get(key);
    if (v === undefined) return dflt;
    if (typeof v === "number" && Number.isSafeInteger(v) && v >= min && (max === undefined || v <= max)) return v;
    this.issue(
      key,
      max === undefined ? `must be an integer >= ${min}` : `must be an integer between ${min} and ${max}`,
    );
    return dflt;
  }

  absPath(key: string, dflt: string, opts: { allowEmpty?: boolean } = {}): string {
    const v = this.string(key, dflt);
    if (!this.has(key) || !this.ok(key)) return v;
    if (v === "" && opts.allowEmpty === true) return v;
    if (v.startsWith("/")) return v;
    this.issue(key, `must be an absolute path, not ${JSON.stringify(v)}`);
    return dflt;
  }

  oneOf<T extends string>(key: string, values: readonly T[], dflt: T, refused: Refused = {}): T {
    const v = this.string(key, dflt);
    if (!this.has(key) || !this.ok(key)) return dflt;
    const found = values.find((x) => x === v);
    if (found !== undefined) return found;
    const why = Object.hasOwn(refused, v) ? refused[v] : undefined;
    if (why === "yet") this.issue(key, `${JSON.stringify(v)} is not supported yet (supported: ${quoteAll(values)})`);
    else if (why === "never") {
      this.issue(key, `${JSON.stringify(v)} is not supported by kata-ts (supported: ${quoteAll(values)})`);
    } else this.issue(key, `must be one of ${quoteAll(values)}, not ${JSON.stringify(v)}`);
    return dflt;
  }

  /** An array of strings; `check` returns a problem with one element, or undefined. */
  strings(key: string, dflt: readonly string[], check?: (s: string) => string | undefined): readonly string[] {
    const v = this.#get(key);
    if (v === undefined) return dflt;
    if (!Array.isArray(v)) {
      this.issue(key, `must be an array of strings, not ${tomlTypeName(v)}`);
      return dflt;
    }
    const out: string[] = [];
    v.forEach((s: unknown, i) => {
      if (typeof s !== "string") this.issue(key, `must be a string, not ${tomlTypeName(s)}`, i);
      else {
        const problem = check?.(s);
        if (problem === undefined) out.push(s);
        else this.issue(key, problem, i);
      }
    });
    return this.ok(key) ? out : dflt;
  }

  /** Reports each key no reader asked for, once: Kata keys kata-ts ignores, and unknown keys. */
  leftovers(kataOnly: ReadonlySet<string>): void {
    for (const key of Object.keys(this.#table)) {
      if (this.#known.has(key)) continue;
      const where = `${this.fileOf(key)}: ${this.section} ${key}`;
      if (kataOnly.has(key)) this.#ctx.warnings.push(`${where}: Kata option not supported by kata-ts, ignored`);
      else {
        const near = closest(key, [...this.#known]);
        const hint = near === undefined ? "" : ` (did you mean ${near}?)`;
        this.#ctx.warnings.push(`${where}: unknown key, ignored${hint}`);
      }
    }
  }
}

/** The candidate within edit distance 2 of `key` (the likely intended key of a typo), if any. */
export function closest(key: string, candidates: readonly string[]): string | undefined {
  let best: { c: string; d: number } | undefined;
  for (const c of candidates) {
    const d = editDistance(key, c);
    if (d <= 2 && (best === undefined || d < best.d)) best = { c, d };
  }
  return best?.c;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const sub = (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, sub));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** enable_annotations entries are regular expressions; kata-ts anchors them (see annotations.ts). */
export function regexProblem(s: string): string | undefined {
  try {
    new RegExp(`^(?:${s})$`, "u");
    return undefined;
  } catch (e) {
    return `is not a valid regular expression: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/** valid_*_paths entries are absolute glob(3) patterns. */
export function globProblem(s: string): string | undefined {
  if (!s.startsWith("/")) return `must be an absolute path pattern, not ${JSON.stringify(s)}`;
  const g = compileGlob(s);
  return g.ok ? undefined : `is not a valid glob pattern: ${g.error}`;
}
