// The OCI runtime CLI's lifecycle verbs (runtime-spec command-line contract): create, start, state,
// kill, delete. Each is a call on the sandbox's service; nothing here holds state.

import { rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { Code, KataError, isKataError, wrap } from "../../base/errors.js";
import { errField } from "../../base/log.js";
import { checkId } from "../../base/ids.js";
import { containerRole } from "../../oci/annotations.js";
import { loadBundle } from "../../oci/bundle.js";
import { StateStore } from "../../sandbox/persist.js";
import type { RuntimeContext } from "../runtime-context.js";
import { forceDeleteKey } from "../../shim/json-any.js";
import { connectTask, serviceExitMs, startService, withTask } from "../service-client.js";
import { checkSandboxId } from "../service-host.js";
import { checkPreserveFds, preserveFdsOption } from "../preserve-fds.js";
import { noNewKeyringOption, noPivotOption } from "../runc-flags.js";
import { resolveVmConfig } from "../vm-config.js";
import { loadServiceDeadlines } from "../task-deadlines.js";
import { prepareConsole, prepareStandIn, type DetachedStdio } from "../stdio-bridge.js";
import { recordStandIn, standInPid } from "../stand-in.js";
import { parseSignal } from "../signals.js";
import { forceCleanup } from "../stale.js";
import { containerState, type RuncState } from "./state.js";
import { delay } from "../../base/async.js";
import { processExists } from "../../platform/process.js";

interface CreateFlags {
  readonly bundle: string;
  readonly pidFile?: string;
  readonly consoleSocket?: string;
  readonly preserveFds?: string;
}

/** Creates a container (and, for a sandbox, its VM) and returns the pid of its process stand-in. */
export async function createContainer(ctx: RuntimeContext, id: string, flags: CreateFlags): Promise<number> {
  checkPreserveFds(flags.preserveFds);
  checkId("container id", id);
  const bundle = await loadBundle(flags.bundle);
  const role = containerRole(bundle.spec, id);
  // runc's rule: a detached create of a terminal container needs somewhere to send the pty.
  const terminal = bundle.spec.process?.terminal === true;
  if (terminal !== (flags.consoleSocket !== undefined)) {
    throw new KataError(
      Code.InvalidArgument,
      terminal
        ? `${bundle.dir}/config.json has process.terminal true: create needs --console-socket`
        : "--console-socket needs process.terminal true in config.json",
    );
  }
  const store = new StateStore(ctx.flags.root);
  if (role.type === "sandbox") checkSandboxId(ctx.flags.root, role.sandboxId);
  if ((await store.sandboxOf(id)) !== undefined)
    throw new KataError(Code.AlreadyExists, `container ${id} already exists`);
  let socket: string;
  if (role.type === "sandbox") {
    if ((await store.load(role.sandboxId)) !== undefined) {
      throw new KataError(Code.AlreadyExists, `sandbox ${role.sandboxId} already exists`);
    }
    // The service checks the VM's configuration (annotations included) again; checked here, a bad one
    // starts nothing.
    await resolveVmConfig(ctx, bundle.spec);
    socket = await startService(ctx, role.sandboxId);
  } else {
    if ((await store.load(role.sandboxId)) === undefined) {
      throw new KataError(Code.NotFound, `container ${id}: sandbox ${role.sandboxId} does not exist`);
    }
    socket = store.socketPath(role.sandboxId);
  }
  const deadlines = await loadServiceDeadlines(() => ctx.config(), ctx.logger);
  const c = await connectTask(socket, { sandboxId: role.sandboxId, deadlines });
  const ioDir = path.join(store.sandboxDir(role.sandboxId), "io");
  // The container's process on the host, for the caller: a stand-in holding its stdio (stand-in.ts).
  const target = { socket, sandboxId: role.sandboxId, id, execId: "", log: ctx.flags.log ?? "" };
  let stdio: DetachedStdio;
  try {
    stdio =
      flags.consoleSocket === undefined
        ? await prepareStandIn(ctx.runner, ioDir, target)
        : await prepareConsole(ctx.runner, ioDir, path.resolve(flags.consoleSocket), target);
  } catch (e) {
    // A service started for this sandbox has nothing to hold: let it go.
    if (role.type === "sandbox") {
      await c.task.shutdown({ id, now: true }).catch((err: unknown) => {
        ctx.logger.warn("stop the service of a sandbox not created", { sandboxId: role.sandboxId, err: errField(err) });
      });
      await c.serviceGone(serviceExitMs);
    }
    await c.close();
    throw e;
  }
  try {
    try {
      await c.task.create({ id, bundle: bundle.dir, terminal, ...stdio.paths });
    } catch (e) {
      await stdio.abort();
      // A sandbox that could not be made ends its service: return once it is gone.
      if (role.type === "sandbox" && !(await c.serviceGone(serviceExitMs))) {
        ctx.logger.warn("the service of a sandbox not created did not exit", { sandboxId: role.sandboxId });
      }
      throw e;
    }
    try {
      await recordStandIn(store.sandboxDir(role.sandboxId), id, stdio.pid);
      if (flags.pidFile !== undefined) await writePidFile(path.resolve(flags.pidFile), stdio.pid);
    } catch (e) {
      // The caller will not learn of a container it cannot find: take it away again.
      await c.task.delete({ id }, { metadata: { [forceDeleteKey]: "true" } }).catch((err: unknown) => {
        ctx.logger.warn("delete after the pid file failed", { containerId: id, err: errField(err) });
      });
      await stdio.abort();
      throw wrap(e, flags.pidFile === undefined ? "note the stand-in's pid" : `write --pid-file ${flags.pidFile}`);
    }
    stdio.commit();
    return stdio.pid;
  } finally {
    await c.close();
  }
}

/** The OCI state of a container (see state.ts: from the state directory, as runc). */
export function ociState(ctx: RuntimeContext, id: string): Promise<RuncState> {
  return containerState(ctx.flags.root, id);
}

/** How long `delete --force` waits for a service before it tears the sandbox down without it. */
const forceDeleteMs = 60_000;

/**
 * `delete [--force]`. With --force, the service kills and removes the container whatever its status and
 * whatever its guest answers; when the service itself does not answer (dead, stopped, wedged), the
 * sandbox is torn down from its saved state instead, service and VM killed.
 */
export async function deleteContainer(ctx: RuntimeContext, id: string, force: boolean): Promise<void> {
  const store = new StateStore(ctx.flags.root);
  const sid = await store.sandboxOf(id);
  const standIn = sid === undefined ? undefined : await standInPid(store.sandboxDir(sid), id);
  await deleteOnly(ctx, store, id, force, sid);
  // As runc's delete returns with the container's process gone: its stand-in ends with the process.
  if (standIn !== undefined && standIn !== process.pid) await processGone(standIn, standInExitMs);
}

/** How long delete waits for a stand-in to pass the last output on and exit. */
const standInExitMs = 5000;

async function processGone(pid: number, ms: number): Promise<void> {
  for (let t = 0; t < ms && processExists(pid); t += 50) await delay(50);
}

async function deleteOnly(
  ctx: RuntimeContext,
  store: StateStore,
  id: string,
  force: boolean,
  sid: string | undefined,
): Promise<void> {
  if (!force) {
    await withTask(ctx, id, (task) => task.delete({ id }), { endsSandbox: true });
    return;
  }
  // runc: deleting a container that does not exist with --force is not an error.
  if (sid === undefined) return;
  try {
    await withTask(
      ctx,
      id,
      (task) => task.delete({ id }, { metadata: { [forceDeleteKey]: "true" }, timeoutMs: forceDeleteMs }),
      { endsSandbox: true },
    );
  } catch (e) {
    if (isKataError(e, Code.NotFound) && (await store.sandboxOf(id)) === undefined) return;
    if (!isKataError(e, Code.Unavailable) && !isKataError(e, Code.DeadlineExceeded)) throw e;
    ctx.logger.warn("the sandbox's service did not delete: cleaning up without it", {
      containerId: id,
      err: errField(e),
    });
    await forceCleanup(ctx, store, id);
  }
}

/** Writes the pid file as runc does: whole or not at all (a temporary file renamed over it). */
export async function writePidFile(file: string, pid: number): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  await writeFile(tmp, String(pid), { mode: 0o644 });
  await rename(tmp, file).catch(async (e: unknown) => {
    await rm(tmp, { force: true });
    throw e;
  });
}

export function registerLifecycle(program: Command, ctx: () => RuntimeContext): void {
  program
    .command("create")
    .description("create a container (and its VM when it is a sandbox)")
    .argument("<container-id>")
    .option("-b, --bundle <dir>", "OCI bundle directory", ".")
    .option("--pid-file <file>", "write the pid of the process that holds the container")
    .option("--console-socket <path>", "unix socket that receives the pty master of a terminal container")
    .option(...preserveFdsOption)
    .option(...noPivotOption)
    .option(...noNewKeyringOption)
    .action(async (id: string, flags: CreateFlags) => {
      await createContainer(ctx(), id, flags);
    });

  program
    .command("start")
    .description("start created containers")
    .argument("<container-id...>")
    .action(async (ids: string[]) => {
      for (const id of ids) await withTask(ctx(), id, (task) => task.start({ id }));
    });

  program
    .command("kill")
    .description("send a signal (default SIGTERM) to a container's process")
    .argument("<container-id>")
    .argument("[signal]", "name (KILL, SIGKILL) or number", "SIGTERM")
    .option("-a, --all", "send the signal to every process of the container")
    .action(async (id: string, signal: string, flags: { all?: boolean }) => {
      const signo = parseSignal(signal);
      await withTask(ctx(), id, (task) => task.kill({ id, signal: signo, all: flags.all === true }));
    });

  program
    .command("delete")
    .description("delete a stopped container (its VM too, when it is the sandbox)")
    .argument("<container-id...>")
    .option("-f, --force", "kill it first if it runs; clean up after a dead service")
    .action(async (ids: string[], flags: { force?: boolean }) => {
      for (const id of ids) await deleteContainer(ctx(), id, flags.force === true);
    });

  program
    .command("wait", { hidden: true })
    .description("wait for a container's process to exit and print its exit status")
    .argument("<container-id>")
    .action(async (id: string) => {
      const r = await withTask(ctx(), id, (task) => task.wait({ id }));
      const at = r.exitedAt === undefined ? "" : ` ${timestampDate(r.exitedAt).toISOString()}`;
      process.stdout.write(`${r.exitStatus}${at}\n`);
    });
}
