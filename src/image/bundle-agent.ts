// Bundles the guest agent (tsc output, entry dist/src/cli/agent-main.js) with its npm dependencies into
// one ESM file for the initrd, where there is no node_modules.

import { stat } from "node:fs/promises";
import { build } from "esbuild";
import { Code, KataError, errnoOf, wrap } from "../base/errors.js";

/** Agent entry and bundle, relative to the package root. */
export const agentEntryRelPath = "dist/src/cli/agent-main.js";
export const agentBundleRelPath = "dist/agent/kata-ts-agent.mjs";

// esbuild turns a dependency's CommonJS `require("x")` into a call that needs a global `require`, which
// ESM lacks; this gives it one (harmless when nothing uses it).
const requireShim = [
  'import { createRequire as __kataTsCreateRequire } from "node:module";',
  "const require = __kataTsCreateRequire(import.meta.url);",
].join("\n");

export interface BundleResult {
  readonly outFile: string;
  readonly sizeBytes: number;
}

/** Throws NOT_FOUND when `entryPath` does not exist (tsc has not produced it), INTERNAL when esbuild fails. */
export async function bundleAgent(opts: {
  readonly entryPath: string;
  readonly outFile: string;
}): Promise<BundleResult> {
  try {
    await stat(opts.entryPath);
  } catch (e) {
    if (errnoOf(e) === "ENOENT") {
      throw new KataError(Code.NotFound, `guest agent entry ${opts.entryPath} does not exist (run tsc first)`);
    }
    throw wrap(e, `stat ${opts.entryPath}`);
  }
  try {
    await build({
      entryPoints: [opts.entryPath],
      outfile: opts.outFile,
      bundle: true,
      platform: "node",
      target: "node20",
      format: "esm",
      minify: false,
      sourcemap: false,
      banner: { js: requireShim },
      logLevel: "silent",
    });
  } catch (e) {
    throw new KataError(Code.Internal, `bundle guest agent ${opts.entryPath}`, { cause: e });
  }
  return { outFile: opts.outFile, sizeBytes: (await stat(opts.outFile)).size };
}
