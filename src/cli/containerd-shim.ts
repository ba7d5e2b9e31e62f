// `containerd-shim-kata-ts-v2`: the binary containerd runs for `--runtime io.containerd.kata-ts.v2`
// (the shim v2 binary contract). It is short-lived: `start` starts the pod's service (one per pod, the
// same `shim-main serve` the OCI CLI starts) or finds the one a pod container joins, and prints its
// address; `delete` cleans up after a service that is gone and prints a DeleteResponse. containerd then
// speaks the task API to the service itself.
//
// Flags are Go's (containerd's shim client writes `-namespace ns -address a -id x start`).
//
// containerd runs this once per container for start and for delete: each action imports only what it
// needs (loading the whole runtime costs more than Node's own start). Started by
// containerd-shim-main.ts (ES modules) or from the host's startup snapshot (host-snapshot-main.ts).

import { access, writeFile } from "node:fs/promises";
import path from "node:path";
import { Code, KataError, describeError } from "../base/errors.js";
import { checkId } from "../base/ids.js";
import { parseShimArgs, shimUsage as usage, type ShimArgs } from "./containerd-shim-args.js";
import { defaultRunDir } from "./paths.js";
import type { GlobalFlags } from "./runtime-context.js";

const version = "0.1.0";
function required(args: ShimArgs, name: string): string {
  const v = args.flags.get(name);
  if (typeof v !== "string" || v === "") throw new KataError(Code.InvalidArgument, `missing -${name}\n${usage}`);
  return v;
}

/** containerd's socket addresses may carry a scheme; ours are unix sockets. */
function unixPath(address: string): string {
  return address.replace(/^unix:\/\//, "");
}

/**
 * `start`: for a sandbox (or a container with no pod annotations), starts its service with the
 * containerd namespace and events address; for a pod container, finds its sandbox's service. Writes
 * the `address` file containerd reads back after a restart, and prints the address.
 */
async function start(flags: GlobalFlags, args: ShimArgs, bundleDir: string): Promise<string> {
  const id = checkId("container id", required(args, "id"));
  const namespace = required(args, "namespace");
  const { loadBundle } = await import("../oci/bundle.js");
  const { containerRole } = await import("../oci/annotations.js");
  const { StateStore } = await import("../sandbox/persist.js");
  const launch = await import("./service-launch.js");
  const bundle = await loadBundle(bundleDir);
  const role = containerRole(bundle.spec, id);
  const store = new StateStore(flags.root);
  let socket: string;
  if (role.type === "sandbox") {
    launch.checkSandboxId(flags.root, role.sandboxId);
    const events = process.env["TTRPC_ADDRESS"];
    const { NodeProcessRunner } = await import("../platform/process.js");
    const { launcherRelPath } = await import("../platform/launcher.js");
    const { installRoot } = await import("./paths.js");
    const runner = new NodeProcessRunner({ launcher: path.join(installRoot, launcherRelPath) });
    socket = await launch.startService({ flags, runner }, role.sandboxId, [
      "--namespace",
      namespace,
      ...(events === undefined || events === "" ? [] : ["--events-address", unixPath(events)]),
      ...["--log-fifo", path.join(bundleDir, "log")], // containerd's `log` fifo (shim v2 contract)
    ]);
  } else {
    socket = store.socketPath(role.sandboxId);
    if (!(await launch.serviceListening(socket))) {
      throw new KataError(
        Code.NotFound,
        `container ${id}: the service of sandbox ${role.sandboxId} is not running (create the sandbox first)`,
      );
    }
  }
  const address = `unix://${socket}`;
  await writeFile(path.join(bundleDir, "address"), address);
  return address;
}

/**
 * `delete`: containerd could not reach the task's service (it died, or start failed). Removes whatever
 * of the container or its sandbox is left, and answers as a shim whose task was killed.
 */
async function del(flags: GlobalFlags, args: ShimArgs): Promise<Uint8Array> {
  const id = checkId("container id", required(args, "id"));
  const { create, toBinary } = await import("@bufbuild/protobuf");
  const { timestampFromDate } = await import("@bufbuild/protobuf/wkt");
  const { isKataError } = await import("../base/errors.js");
  const { DeleteResponseSchema } = await import("../protocol/gen/containerd/runtime/v2/task/shim_pb.js");
  const { StateStore } = await import("../sandbox/persist.js");
  const store = new StateStore(flags.root);
  // Nothing of it left to clean (containerd asks after a start that failed early, too): answer without
  // loading the runtime.
  if ((await store.sandboxOf(id)) !== undefined) {
    const { makeContext } = await import("./runtime-context.js");
    const { forceCleanup } = await import("./stale.js");
    await forceCleanup(makeContext(flags), store, id).catch((e: unknown) => {
      if (!isKataError(e, Code.NotFound)) throw e;
    });
  }
  return toBinary(
    DeleteResponseSchema,
    create(DeleteResponseSchema, { pid: 0, exitStatus: 128 + 9, exitedAt: timestampFromDate(new Date()) }),
  );
}

async function main(argv: readonly string[]): Promise<void> {
  const args = parseShimArgs(argv);
  if (args.flags.has("v") || args.flags.has("version")) {
    process.stdout.write(`containerd-shim-kata-ts-v2:\n  Version: ${version}\n  Runtime: kata-ts (QEMU VMs)\n`);
    return;
  }
  const bundleDir = path.resolve((args.flags.get("bundle") as string | undefined) ?? process.cwd());
  const debug = args.flags.get("debug") === true;
  // The shim's log lives with the task, in its bundle (containerd removes it with the task).
  await access(bundleDir).catch((e: unknown) => {
    throw new KataError(Code.NotFound, `bundle ${bundleDir}`, { cause: e });
  });
  const flags: GlobalFlags = {
    root: process.env["KATA_TS_ROOT"] ?? defaultRunDir,
    log: path.join(bundleDir, "kata-ts.log"),
    logFormat: "json",
    debug,
    ...(process.env["KATA_CONF_FILE"] === undefined ? {} : { config: process.env["KATA_CONF_FILE"] }),
  };
  switch (args.action) {
    case "start":
      process.stdout.write(await start(flags, args, bundleDir));
      return;
    case "delete":
      process.stdout.write(await del(flags, args));
      return;
    case undefined:
    default:
      throw new KataError(Code.InvalidArgument, `unknown action ${String(args.action)}\n${usage}`);
  }
}

/** `args`: what follows the program name. Sets process.exitCode. */
export async function runContainerdShim(args: readonly string[]): Promise<void> {
  try {
    await main(args);
  } catch (e) {
    process.stderr.write(`containerd-shim-kata-ts-v2: ${describeError(e)}\n`);
    process.exitCode = 1;
  }
}
