#!/usr/bin/env node
// The per-sandbox service from its ES modules (shim-serve.ts): what `create` and the containerd shim
// spawn when they did not start from the host's startup snapshot themselves (host-snapshot.ts).

import { runShimService } from "./shim-serve.js";

await runShimService(process.argv.slice(2));
