// glob(3) path patterns for the valid_*_paths lists, matched purely on the string (fnmatch with
// FNM_PATHNAME): `*` and `?` never match "/", `[...]` classes (with `!` or `^` negation and ranges) never
// match "/", and `\` quotes the next character.
//
// Kata's Go runtime instead lists the files the pattern matches on disk (filepath.Glob) and compares; a
// string match does not need the file to exist yet, so callers must also insist on a normalized absolute
// path (see isCleanAbsolutePath): otherwise "/usr/bin/*/qemu" would admit "/usr/bin/../qemu".

import path from "node:path";

export type CompiledGlob = { readonly ok: true; readonly re: RegExp } | { readonly ok: false; readonly error: string };

function codePoint(c: string): string {
  return `\\u{${(c.codePointAt(0) ?? 0).toString(16)}}`;
}

/** Parses the bracket expression starting after `[` at `start`; returns the regex source and the index after `]`. */
function bracket(pattern: readonly string[], start: number): { source: string; next: number } | { error: string } {
  let i = start;
  const negate = pattern[i] === "!" || pattern[i] === "^";
  if (negate) i++;
  const items: string[] = [];
  let first = true;
  for (;;) {
    let c = pattern[i];
    if (c === undefined) return { error: "unterminated [" };
    // A "]" right after "[" or "[!" is a literal member, as in fnmatch.
    if (c === "]" && !first) break;
    first = false;
    if (c === "\\") {
      i++;
      c = pattern[i];
      if (c === undefined) return { error: "trailing backslash" };
    }
    i++;
    if (pattern[i] === "-" && pattern[i + 1] !== undefined && pattern[i + 1] !== "]") {
      let hi = pattern[i + 1] ?? "";
      i += 2;
      if (hi === "\\") {
        hi = pattern[i] ?? "";
        if (hi === "") return { error: "trailing backslash" };
        i++;
      }
      if ((hi.codePointAt(0) ?? 0) < (c.codePointAt(0) ?? 0)) return { error: `invalid range ${c}-${hi}` };
      items.push(`${codePoint(c)}-${codePoint(hi)}`);
    } else {
      items.push(codePoint(c));
    }
  }
  const cls = `[${negate ? "^" : ""}${items.join("")}]`;
  return { source: `(?!/)${cls}`, next: i + 1 };
}

export function compileGlob(pattern: string): CompiledGlob {
  const chars = Array.from(pattern);
  let source = "";
  for (let i = 0; i < chars.length;) {
    const c = chars[i] ?? "";
    if (c === "*") {
      source += "[^/]*";
      i++;
    } else if (c === "?") {
      source += "[^/]";
      i++;
    } else if (c === "[") {
      const b = bracket(chars, i + 1);
      if ("error" in b) return { ok: false, error: b.error };
      source += b.source;
      i = b.next;
    } else if (c === "\\") {
      const q = chars[i + 1];
      if (q === undefined) return { ok: false, error: "trailing backslash" };
      source += codePoint(q);
      i += 2;
    } else {
      source += codePoint(c);
      i++;
    }
  }
  return { ok: true, re: new RegExp(`^${source}$`, "u") };
}

/** True when `p` matches one of `patterns`; invalid patterns match nothing (the loader reports them). */
export function matchesAnyGlob(patterns: readonly string[], p: string): boolean {
  return patterns.some((pattern) => {
    const g = compileGlob(pattern);
    return g.ok && g.re.test(p);
  });
}

/** Absolute, with no "." or ".." segment, no "//", no trailing "/" and no NUL: what a glob can safely vouch for. */
export function isCleanAbsolutePath(p: string): boolean {
  return p.startsWith("/") && p.length > 1 && !p.includes("\0") && path.posix.normalize(p) === p && !p.endsWith("/");
}
