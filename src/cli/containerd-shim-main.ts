#!/usr/bin/env node
// `containerd-shim-kata-ts-v2` from its ES modules (containerd-shim.ts): what
// bin/containerd-shim-kata-ts-v2 starts when the host's startup snapshot cannot be used.

import { runContainerdShim } from "./containerd-shim.js";

await runContainerdShim(process.argv.slice(2));
