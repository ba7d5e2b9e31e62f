import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { keptDynamicImports } from "./host-bundle.js";

describe("keptDynamicImports", () => {
  it("names the import() calls esbuild left in the bundle, not the ones it bundled or required", () => {
    const out = (imports: { path: string; kind: string; external?: boolean }[]) => ({
      outputs: { "dist/host/kata-ts-host.cjs": { imports } },
    });
    assert.deepEqual(
      keptDynamicImports(
        out([
          { path: "node:path", kind: "dynamic-import", external: true },
          { path: "node:fs", kind: "require-call", external: true },
          { path: "dist/src/cli/commands/run.js", kind: "dynamic-import" },
        ]),
      ),
      ["node:path"],
    );
    assert.deepEqual(keptDynamicImports(out([])), []);
  });
});
