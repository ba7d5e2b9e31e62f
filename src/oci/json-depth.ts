// Untrusted JSON (config.json, an exec's process, an update's resources) is limited in depth. JSON.parse
// takes any depth, but what walks a value recursively afterwards (structuredClone of the spec, the
// protobuf conversion, JSON.stringify) overflows the stack on a deep one: late, once the service runs,
// and as an INTERNAL "Maximum call stack size exceeded".

/** Far deeper than any runtime-spec document needs (a seccomp rule's argument sits 5 levels down). */
export const maxJsonDepth = 64;

interface Frame {
  readonly value: unknown;
  readonly depth: number;
  readonly parent: Frame | undefined;
  readonly key: string | number;
}

function pathOf(f: Frame, root: string): string {
  const keys: (string | number)[] = [];
  for (let cur = f; cur.parent !== undefined; cur = cur.parent) keys.push(cur.key);
  let path = root;
  for (const k of keys.reverse()) path = typeof k === "number" ? `${path}[${k}]` : path === "" ? k : `${path}.${k}`;
  return path;
}

/**
 * The path (as parse-spec names fields: "annotations.a[0]") of the first array or object nested deeper
 * than `max` (the value itself is depth 1), or undefined. Iterative: it never overflows on what it
 * looks at, whatever the depth.
 */
export function tooDeepAt(value: unknown, root = "", max = maxJsonDepth): string | undefined {
  const stack: Frame[] = [{ value, depth: 1, parent: undefined, key: "" }];
  for (;;) {
    const f = stack.pop();
    if (f === undefined) return undefined;
    const v = f.value;
    if (typeof v !== "object" || v === null) continue;
    if (f.depth > max) return pathOf(f, root);
    const children: [string | number, unknown][] = Array.isArray(v) ? [...v.entries()] : Object.entries(v);
    for (const [key, child] of children) stack.push({ value: child, depth: f.depth + 1, parent: f, key });
  }
}
