// `npm run build` step after tsc: the host's startup snapshot (host-bundle.ts), for this host's node.
// Run as dist/src/cli/host-bundle-main.js, so the package root is three directories up. A failure is
// a warning, not a failed build: bin/launch.sh then starts every process from its ES modules.

import { describeError } from "../base/errors.js";
import { buildHostSnapshot } from "./host-bundle.js";
import { installRoot } from "./paths.js";

try {
  const r = await buildHostSnapshot(installRoot, process.execPath);
  process.stderr.write(`host-bundle: wrote ${r.blob} (${(r.sizeBytes / 1e6).toFixed(1)} MB)\n`);
} catch (e) {
  process.stderr.write(`host-bundle: warning: ${describeError(e)}; kata-ts will start from its ES modules (slower)\n`);
}
