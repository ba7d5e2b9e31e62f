// `npm run build` step after tsc: bundle the guest agent into dist/agent/kata-ts-agent.mjs.
// Run as dist/src/image/bundle-agent-main.js, so the package root is three directories up.

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, describeError, isKataError } from "../base/errors.js";
import { agentBundleRelPath, agentEntryRelPath, agentSnapshotEntryRelPath, bundleAgent } from "./bundle-agent.js";

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const entryPath = join(packageRoot, agentEntryRelPath);
const outFile = join(packageRoot, agentBundleRelPath);
const cjsOutFile = join(packageRoot, agentSnapshotEntryRelPath);

try {
  const r = await bundleAgent({ entryPath, outFile, cjsOutFile });
  process.stderr.write(`bundle-agent: wrote ${r.outFile} (${(r.sizeBytes / 1e3).toFixed(0)} kB) and ${r.cjsOutFile}\n`);
} catch (e) {
  if (isKataError(e, Code.NotFound)) {
    // The agent entry is not written yet; the build must not fail for it until it is.
    process.stderr.write(`bundle-agent: warning: ${describeError(e)}; no agent bundle written\n`);
  } else {
    process.stderr.write(`bundle-agent: ${describeError(e)}\n`);
    process.exitCode = 1;
  }
}
