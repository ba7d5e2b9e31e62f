// Drop-in merging: each layer (the main file, then config.d/*.toml in order) is merged over the ones before
// it, table by table and key by key; any other value (arrays included) replaces the earlier one whole.
// These are the semantics of Kata's runtime-rs (kata-types config/drop_in.rs) and, for the tables Kata
// declares, of its Go runtime (katautils decodeDropIns). Each key remembers the file that set it, so an
// error names the file to fix.

export type TomlTable = { [key: string]: unknown };

export interface Layer {
  readonly file: string;
  readonly doc: TomlTable;
}

export interface Merged {
  readonly doc: TomlTable;
  /** The file that set the value at `keys` (or the nearest enclosing table); "" for no layer. */
  originOf(keys: readonly string[]): string;
}

export function isTable(v: unknown): v is TomlTable {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date) && isPlain(v);
}

function isPlain(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

// Keys cannot contain NUL in practice (TOML allows it only escaped), so it separates path segments safely.
const sep = "\u0000";

function mergeInto(base: TomlTable, over: TomlTable, file: string, prefix: string, origins: Map<string, string>): void {
  for (const [key, value] of Object.entries(over)) {
    const at = prefix + sep + key;
    const current = Object.hasOwn(base, key) ? base[key] : undefined;
    if (isTable(value) && isTable(current)) {
      origins.set(at, file);
      mergeInto(current, value, file, at, origins);
    } else {
      base[key] = isTable(value) ? copyTable(value) : value;
      for (const k of origins.keys()) if (k.startsWith(at + sep)) origins.delete(k);
      markAll(at, value, file, origins);
    }
  }
}

/** Records `file` as the origin of `value` and of everything inside it. */
function markAll(at: string, value: unknown, file: string, origins: Map<string, string>): void {
  origins.set(at, file);
  if (isTable(value)) for (const [k, v] of Object.entries(value)) markAll(at + sep + k, v, file, origins);
}

function copyTable(t: TomlTable): TomlTable {
  const out: TomlTable = {};
  for (const [k, v] of Object.entries(t)) out[k] = isTable(v) ? copyTable(v) : v;
  return out;
}

export function mergeLayers(layers: readonly Layer[]): Merged {
  const doc: TomlTable = {};
  const origins = new Map<string, string>();
  for (const layer of layers) mergeInto(doc, layer.doc, layer.file, "", origins);
  return {
    doc,
    originOf(keys: readonly string[]): string {
      for (let n = keys.length; n > 0; n--) {
        const o = origins.get(sep + keys.slice(0, n).join(sep));
        if (o !== undefined) return o;
      }
      return layers[0]?.file ?? "";
    },
  };
}
