// Bundles the guest agent (tsc output, entry dist/src/cli/agent-main.js) with its npm dependencies into
// one file for the initrd, where there is no node_modules: ESM, which the guest runs as is, and
// CommonJS, the only format `node --build-snapshot` takes (Node 20), for the agent's startup snapshot.

import { stat } from "node:fs/promises";
import { build, type BuildOptions } from "esbuild";
import { Code, KataError, errnoOf, wrap } from "../base/errors.js";

export { agentBundleRelPath, agentEntryRelPath, agentSnapshotEntryRelPath } from "./agent-paths.js";

// esbuild turns a dependency's CommonJS `require("x")` into a call that needs a global `require`, which
// ESM lacks; this gives it one (harmless when nothing uses it).
const requireShim = [
  'import { createRequire as __kataTsCreateRequire } from "node:module";',
  "const require = __kataTsCreateRequire(import.meta.url);",
].join("\n");

export interface BundleResult {
  readonly outFile: string;
  readonly sizeBytes: number;
  readonly cjsOutFile: string;
}

/**
 * Writes `outFile` (ESM) and `cjsOutFile` (CommonJS). Throws NOT_FOUND when `entryPath` does not exist
 * (tsc has not produced it), INTERNAL when esbuild fails.
 */
export async function bundleAgent(opts: {
  readonly entryPath: string;
  readonly outFile: string;
  readonly cjsOutFile: string;
}): Promise<BundleResult> {
  try {
    await stat(opts.entryPath);
  } catch (e) {
    if (errnoOf(e) === "ENOENT") {
      throw new KataError(Code.NotFound, `guest agent entry ${opts.entryPath} does not exist (run tsc first)`);
    }
    throw wrap(e, `stat ${opts.entryPath}`);
  }
  const common: BuildOptions = {
    entryPoints: [opts.entryPath],
    bundle: true,
    platform: "node",
    target: "node20",
    minify: false,
    sourcemap: false,
    logLevel: "silent",
  };
  try {
    await build({ ...common, outfile: opts.outFile, format: "esm", banner: { js: requireShim } });
    await build({ ...common, outfile: opts.cjsOutFile, format: "cjs" });
  } catch (e) {
    throw new KataError(Code.Internal, `bundle guest agent ${opts.entryPath}`, { cause: e });
  }
  return { outFile: opts.outFile, sizeBytes: (await stat(opts.outFile)).size, cjsOutFile: opts.cjsOutFile };
}
