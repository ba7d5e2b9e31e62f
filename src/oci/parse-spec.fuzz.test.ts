// Property-based tests of config.json validation: a valid-shaped spec with one value replaced by any JSON
// (or removed) gets problems only at that place, and whatever validation accepts, the modules that read
// a Spec afterwards (the grpc.Spec mapping, the container role) handle without crashing.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Code } from "../base/errors.js";
import { ociToGrpcProcess, ociToGrpcSpec, unmappedOciFields } from "../protocol/oci-spec/convert.js";
import { fuzzParams, onlyKataError } from "../../test/helpers/fuzz.js";
import { arb, processNode, resourcesNode, specNode, type Node, type Obj } from "../../test/helpers/oci-spec-arb.js";
import { containerRole } from "./annotations.js";
import { parseLinuxResources, parseProcess, parseSpec, specIssues, type Issue } from "./parse-spec.js";

type Key = string | number;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Every place in `v`, and the absent fields the schema knows of each object in it. */
function places(node: Node | undefined, v: unknown, at: Key[], out: Key[][]): Key[][] {
  out.push(at);
  if (Array.isArray(v)) {
    v.forEach((x, i) => places(node?.t === "list" ? node.of : undefined, x, [...at, i], out));
  } else if (isObj(v)) {
    const fields = node?.t === "obj" ? node.fields : {};
    for (const k of new Set([...Object.keys(v), ...Object.keys(fields)])) {
      places(fields[k]?.node, Object.hasOwn(v, k) ? v[k] : undefined, [...at, k], out);
    }
  }
  return out;
}

/** The JSON path parseSpec would name for `at`: `mounts[0].destination`. */
function jsonPath(at: readonly Key[]): string {
  return at.map((k, i) => (typeof k === "number" ? `[${k}]` : i === 0 ? k : `.${k}`)).join("");
}

/** `doc` with the value at `at` replaced by `value`, or removed when `value` is undefined. */
function replaced(doc: unknown, at: readonly Key[], value: unknown): unknown {
  const [k, ...rest] = at;
  if (k === undefined) return value;
  if (Array.isArray(doc) && typeof k === "number") {
    const items: unknown[] = doc;
    return items.flatMap((x, i) =>
      i !== k ? [x] : rest.length === 0 && value === undefined ? [] : [replaced(x, rest, value)],
    );
  }
  if (!isObj(doc) || typeof k !== "string") return doc;
  const out: Obj = { ...doc };
  const inner = rest.length === 0 ? value : replaced(Object.hasOwn(doc, k) ? doc[k] : undefined, rest, value);
  if (inner === undefined) Reflect.deleteProperty(out, k);
  else Object.defineProperty(out, k, { value: inner, enumerable: true, writable: true, configurable: true });
  return out;
}

/** As config.json text would give it: no undefined, no -0, "__proto__" an own key; a whole undefined is null. */
const asJson = (v: unknown): unknown => (v === undefined ? null : JSON.parse(JSON.stringify(v)));

/** Validation requires a root; the schema's generator, like the OCI spec, does not. */
const withRoot = (s: unknown): unknown => asJson(isObj(s) ? { root: { path: "/rootfs" }, ...s } : s);

/** A valid-shaped spec, one place in it, and the document with that place replaced by any JSON or removed. */
const mutatedSpec = arb(specNode)
  .map(withRoot)
  .chain((base) =>
    fc.record({
      base: fc.constant(base),
      at: fc.constantFrom(...places(specNode, base, [], [])),
      value: fc.option(fc.jsonValue({ maxDepth: 2 }), { nil: undefined, freq: 4 }),
    }),
  )
  .map(({ base, at, value }) => ({ base, at, doc: asJson(replaced(base, at, value)) }));

/** A spec-shaped document with any JSON here and there, and required fields left out now and then. */
const wildSpec = arb(specNode, { wild: true }).map(withRoot);

const show = (i: Issue): string => `${i.path} ${i.message}`;

describe("specIssues / parseSpec (fuzz)", () => {
  it("reports problems only where the document was changed, and refuses exactly when there are some", () => {
    fc.assert(
      fc.property(mutatedSpec, ({ base, at, doc }) => {
        const before = new Set(specIssues(base).map(show));
        const issues = specIssues(doc);
        const where = jsonPath(at);

        for (const i of issues) {
          if (before.has(show(i)) || where === "") continue;
          const inside = i.path === where || i.path.startsWith(`${where}.`) || i.path.startsWith(`${where}[`);
          assert.ok(inside, `changing ${where} brought a problem at ${show(i)}`);
        }
        const r = onlyKataError(() => parseSpec(doc));
        assert.equal(r.ok, issues.length === 0);
        if (!r.ok) {
          assert.equal(r.error.code, Code.InvalidArgument);
          for (const i of issues) assert.ok(r.error.message.includes(i.path), `${r.error.message} names ${i.path}`);
        }
      }),
      fuzzParams(400),
    );
  });

  it("what validation accepts, the spec's readers take without a crash", () => {
    fc.assert(
      fc.property(wildSpec, (doc) => {
        const r = onlyKataError(() => parseSpec(doc));
        if (!r.ok) return;
        const spec = r.value;

        onlyKataError(() => ociToGrpcSpec(spec));
        assert.ok(Array.isArray(unmappedOciFields(spec)));
        onlyKataError(() => containerRole(spec, "c1"));
      }),
      fuzzParams(400),
    );
  });

  it("an exec process or a resources update that validation accepts maps without a crash", () => {
    const wild = { wild: true } as const;
    fc.assert(
      fc.property(arb(processNode, wild).map(asJson), arb(resourcesNode, wild).map(asJson), (p, r) => {
        const process = onlyKataError(() => parseProcess(p, "exec e1: spec"));
        const resources = onlyKataError(() => parseLinuxResources(r, "update c1: resources"));

        if (process.ok) onlyKataError(() => ociToGrpcProcess(process.value));
        if (resources.ok)
          onlyKataError(() => ociToGrpcSpec({ ociVersion: "1.0.2", linux: { resources: resources.value } }));
      }),
      fuzzParams(300),
    );
  });

  it("any JSON value gives problems or a spec, never an exception of another kind", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (doc) => {
        const issues = specIssues(doc);
        const r = onlyKataError(() => parseSpec(doc, "bundle/config.json"));

        assert.equal(r.ok, issues.length === 0);
        if (!r.ok) assert.ok(r.error.message.startsWith("bundle/config.json: "), r.error.message);
      }),
      fuzzParams(300),
    );
  });
});
