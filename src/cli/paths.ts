// Where this build lives and where sandboxes go by default, without loading anything else: short-lived
// entry points (the containerd shim's start) need these and nothing of the runtime.

import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository (or install) root: dist/src/cli/ is three levels below it. */
export const installRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export { defaultRunDir } from "../sandbox/persist.js";
