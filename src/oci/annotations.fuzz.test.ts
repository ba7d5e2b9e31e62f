// Property-based tests of the container role read from CRI annotations: any annotation map gives a role
// whose sandbox id is safe to put in a host path, or one INVALID_ARGUMENT that names the refused value.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Code } from "../base/errors.js";
import { checkId } from "../base/ids.js";
import { fuzzParams, onlyKataError } from "../../test/helpers/fuzz.js";
import { annotationSchemes, containerRole } from "./annotations.js";

const schemeKeys = annotationSchemes.flatMap((s) => [s.typeKey, s.sandboxIdKey]);
const key = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...schemeKeys) }, fc.string({ maxLength: 8 }));
const value = fc.oneof(
  fc.constantFrom("sandbox", "container", "podsandbox", "Sandbox", "", "s1", "pod-1.a_b", ".."),
  fc.constantFrom("../../etc", "a/b", "-x", "a\nb", "x".repeat(1025), "\u0000"),
  fc.string({ unit: "binary", maxLength: 10 }),
);
const annotations = fc.dictionary(key, value, { maxKeys: 4, noNullPrototype: true });

describe("containerRole (fuzz)", () => {
  it("gives a role with a path-safe sandbox id from the first scheme present, or names what it refused", () => {
    fc.assert(
      fc.property(annotations, fc.constantFrom("c1", "ctr-2.x"), (a, containerId) => {
        const r = onlyKataError(() => containerRole({ ociVersion: "1.0.2", annotations: a }, containerId));
        const scheme = annotationSchemes.find((s) => Object.hasOwn(a, s.typeKey));

        if (!r.ok) {
          assert.equal(r.error.code, Code.InvalidArgument);
          assert.doesNotMatch(r.error.message, /\p{Cc}/u, "no control character reaches the message");
          assert.ok(scheme !== undefined, "only a scheme's annotation can be refused");
          // The refused value as JSON (an id is cut at 80 characters), or the annotation that is missing.
          const named = [a[scheme.typeKey], a[scheme.sandboxIdKey]].some(
            (v) => v !== undefined && r.error.message.includes(JSON.stringify(v).slice(0, 40)),
          );
          assert.ok(named || r.error.message.includes(`no sandbox id (${scheme.sandboxIdKey})`), r.error.message);
          return;
        }
        const role = r.value;
        assert.equal(role.scheme, scheme?.name ?? "none");
        if (role.sandboxId !== containerId) assert.equal(checkId("sandbox id", role.sandboxId), role.sandboxId);
        if (role.type === "container") assert.equal(role.sandboxId, scheme === undefined ? "" : a[scheme.sandboxIdKey]);
      }),
      fuzzParams(1000),
    );
  });
});
