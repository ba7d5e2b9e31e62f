// Type checks of untrusted JSON against the runtime-spec's field types, collecting every problem with its
// JSON path instead of stopping at the first. Used by parse-spec.ts and parse-linux.ts.

export interface Issue {
  readonly path: string;
  readonly message: string;
}

export type Json = unknown;

export function isObject(v: Json): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function typeName(v: Json): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

export class Checker {
  readonly issues: Issue[] = [];

  add(path: string, message: string): void {
    this.issues.push({ path, message });
  }

  string(v: Json, path: string, required: boolean): void {
    if (v === undefined) {
      if (required) this.add(path, "is required");
    } else if (typeof v !== "string") this.add(path, `must be a string, not ${typeName(v)}`);
  }

  /** Optional string fields of `o`, by key. */
  strings(o: Record<string, Json>, path: string, keys: readonly string[]): void {
    for (const k of keys) this.string(o[k], `${path}.${k}`, false);
  }

  bool(v: Json, path: string, required = false): void {
    if (v === undefined) {
      if (required) this.add(path, "is required");
    } else if (typeof v !== "boolean") this.add(path, `must be a boolean, not ${typeName(v)}`);
  }

  int(v: Json, path: string, required: boolean, min = -(2 ** 53)): void {
    if (v === undefined) {
      if (required) this.add(path, "is required");
    } else if (typeof v !== "number" || !Number.isSafeInteger(v))
      this.add(path, `must be an integer, not ${typeName(v)}`);
    else if (v < min) this.add(path, `must be >= ${min}`);
  }

  /** Optional integer fields of `o`, by key, each at least `min`. */
  ints(o: Record<string, Json>, path: string, keys: readonly string[], min?: number): void {
    for (const k of keys) this.int(o[k], `${path}.${k}`, false, min);
  }

  stringArray(v: Json, path: string, required = false): void {
    if (v === undefined) {
      if (required) this.add(path, "is required");
      return;
    }
    if (!Array.isArray(v)) {
      this.add(path, `must be an array of strings, not ${typeName(v)}`);
      return;
    }
    v.forEach((s, i) => {
      if (typeof s !== "string") this.add(`${path}[${i}]`, `must be a string, not ${typeName(s)}`);
    });
  }

  stringMap(v: Json, path: string): void {
    if (v === undefined) return;
    if (!isObject(v)) {
      this.add(path, `must be an object of strings, not ${typeName(v)}`);
      return;
    }
    for (const [k, s] of Object.entries(v)) {
      if (typeof s !== "string") this.add(`${path}.${k}`, `must be a string, not ${typeName(s)}`);
    }
  }

  object(v: Json, path: string, required: boolean): v is Record<string, Json> {
    if (v === undefined) {
      if (required) this.add(path, "is required");
      return false;
    }
    if (!isObject(v)) {
      this.add(path, `must be an object, not ${typeName(v)}`);
      return false;
    }
    return true;
  }

  array(v: Json, path: string): v is Json[] {
    if (v === undefined) return false;
    if (!Array.isArray(v)) {
      this.add(path, `must be an array, not ${typeName(v)}`);
      return false;
    }
    return true;
  }

  /** An optional array of objects: `each` checks every element that is an object. */
  objects(v: Json, path: string, each: (o: Record<string, Json>, path: string) => void): void {
    if (!this.array(v, path)) return;
    v.forEach((o, i) => {
      if (this.object(o, `${path}[${i}]`, true)) each(o, `${path}[${i}]`);
    });
  }
}
