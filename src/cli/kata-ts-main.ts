#!/usr/bin/env node
// `kata-ts` from its ES modules: what bin/kata-ts starts when the host's startup snapshot is missing or
// was built for another node or CPU (bin/launch.sh), and what the tests run as the plain entry.

import { runKataTs } from "./kata-ts-cli.js";

await runKataTs(process.argv.slice(2));
