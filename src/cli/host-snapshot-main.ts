// Entry of the host's startup snapshot (host-snapshot.ts): bundled to CommonJS (the only format
// `node --build-snapshot` takes on Node 20) by host-bundle.ts, then run once under --build-snapshot.
// Loading it loads every module the CLI, the containerd shim and the service import, lazily or not,
// so the snapshot holds them initialized; it starts nothing and opens nothing (a snapshot cannot hold
// a handle). The process started from the blob runs main().

import v8 from "node:v8";
import { describeError } from "../base/errors.js";
import { runContainerdShim } from "./containerd-shim.js";
import { entryCall, type HostEntry } from "./host-snapshot.js";
import { runKataTs } from "./kata-ts-cli.js";
import { installRoot } from "./paths.js";
import { runShimService } from "./shim-serve.js";
// What the verbs, the containerd shim and the service import on demand (verb-groups.ts,
// containerd-shim.ts, commands/factory.ts, runtime-context.ts). Not @grpc/grpc-js (the VM cache's
// client and server; cache-admin.ts imports the server): it loads node:http2, which a Node 20 snapshot
// cannot hold. It is in the bundle all the same, and loads when first imported.
import "@bufbuild/protobuf/wkt";
import "./commands/check.js";
import "./commands/env.js";
import "./commands/exec.js";
import "./commands/factory.js";
import "./commands/inspect.js";
import "./commands/install-apply.js";
import "./commands/install.js";
import "./commands/lifecycle.js";
import "./commands/run.js";
import "./commands/state.js";
import "./commands/unsupported.js";
import "./runtime-context.js";
import "./service-launch.js";
import "./stale.js";
import "../image/agent-paths.js";
import "../image/image-command.js";
import "../oci/annotations.js";
import "../oci/bundle.js";
import "../platform/launcher.js";
import "../platform/process.js";
import "../platform/tracing.js";
import "../protocol/gen/containerd/runtime/v2/task/shim_pb.js";
import "../sandbox/persist.js";

const entries: Readonly<Record<HostEntry, (args: readonly string[]) => Promise<void>>> = {
  "kata-ts": runKataTs,
  "containerd-shim": runContainerdShim,
  "shim-service": runShimService,
};

function main(): void {
  try {
    const call = entryCall(installRoot, process.argv);
    // As the entry's ES module would see it (`kata-ts env` reports its path).
    process.argv = [...call.argv];
    void entries[call.entry](call.args);
  } catch (e) {
    process.stderr.write(`kata-ts: ${describeError(e)}\n`);
    process.exitCode = 2;
  }
}

if (v8.startupSnapshot.isBuildingSnapshot()) v8.startupSnapshot.setDeserializeMainFunction(main);
