// The OCI runtime CLI's lifecycle verbs (runtime-spec command-line contract): create, start, state,
// kill, delete. Each is a call on the sandbox's service; nothing here holds state.

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { Code, KataError, isKataError } from "../../base/errors.js";
import { checkId } from "../../base/ids.js";
import { containerRole } from "../../oci/annotations.js";
import { loadBundle } from "../../oci/bundle.js";
import { ociVersion, type State } from "../../oci/spec.js";
import { Status } from "../../protocol/gen/containerd/api/types/task/task_pb.js";
import { StateStore } from "../../sandbox/persist.js";
import type { RuntimeContext } from "../runtime-context.js";
import { connectTask, sandboxOf, startService, withTask } from "../service-client.js";
import { prepareConsole, prepareStdio, type PreparedStdio } from "../stdio-bridge.js";
import { parseSignal } from "../signals.js";
import { forceCleanup } from "../stale.js";

const statusName: Record<number, State["status"]> = {
  [Status.CREATED]: "created",
  [Status.RUNNING]: "running",
  [Status.STOPPED]: "stopped",
  [Status.PAUSED]: "paused",
  [Status.UNKNOWN]: "creating",
  [Status.PAUSING]: "running",
};

interface CreateFlags {
  readonly bundle: string;
  readonly pidFile?: string;
  readonly consoleSocket?: string;
}

/** Creates a container (and, for a sandbox, its VM) and returns the service's pid. */
export async function createContainer(ctx: RuntimeContext, id: string, flags: CreateFlags): Promise<number> {
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
  if ((await store.sandboxOf(id)) !== undefined)
    throw new KataError(Code.AlreadyExists, `container ${id} already exists`);
  let socket: string;
  if (role.type === "sandbox") {
    if ((await store.load(role.sandboxId)) !== undefined) {
      throw new KataError(Code.AlreadyExists, `sandbox ${role.sandboxId} already exists`);
    }
    socket = await startService(ctx, role.sandboxId);
  } else {
    if ((await store.load(role.sandboxId)) === undefined) {
      throw new KataError(Code.NotFound, `container ${id}: sandbox ${role.sandboxId} does not exist`);
    }
    socket = store.socketPath(role.sandboxId);
  }
  const c = await connectTask(socket);
  const ioDir = path.join(store.sandboxDir(role.sandboxId), "io");
  let stdio: PreparedStdio;
  try {
    stdio =
      flags.consoleSocket === undefined
        ? await prepareStdio(ctx.runner, ioDir, "detached")
        : await prepareConsole(ctx.runner, ioDir, path.resolve(flags.consoleSocket));
  } catch (e) {
    // A service started for this sandbox has nothing to hold: let it go.
    if (role.type === "sandbox") await c.task.shutdown({ id, now: true }).catch(() => undefined);
    await c.close();
    throw e;
  }
  try {
    let pid: number;
    try {
      pid = (await c.task.create({ id, bundle: bundle.dir, terminal, ...stdio.paths })).pid;
    } catch (e) {
      await stdio.abort();
      throw e;
    }
    if (flags.pidFile !== undefined) await writeFile(path.resolve(flags.pidFile), String(pid));
    return pid;
  } finally {
    await c.close();
  }
}

export async function ociState(ctx: RuntimeContext, id: string): Promise<State> {
  const store = new StateStore(ctx.flags.root);
  const sid = await sandboxOf(store, id);
  const saved = (await store.load(sid))?.containers.find((c) => c.id === id);
  try {
    return await withTask(store, id, async (task) => {
      const s = await task.state({ id });
      return {
        ociVersion,
        id,
        status: statusName[s.status] ?? "stopped",
        pid: s.pid,
        bundle: s.bundle,
        ...(saved === undefined || Object.keys(saved.annotations).length === 0
          ? {}
          : { annotations: { ...saved.annotations } }),
      };
    });
  } catch (e) {
    if (!isKataError(e, Code.Unavailable) || saved === undefined) throw e;
    // The service is gone: what the state directory remembers, stopped.
    return {
      ociVersion,
      id,
      status: "stopped",
      bundle: saved.bundle,
      ...(Object.keys(saved.annotations).length === 0 ? {} : { annotations: { ...saved.annotations } }),
    };
  }
}

export async function deleteContainer(ctx: RuntimeContext, id: string, force: boolean): Promise<void> {
  const store = new StateStore(ctx.flags.root);
  try {
    await withTask(store, id, async (task) => {
      if (force) {
        const s = await task.state({ id });
        if (s.status === Status.RUNNING || s.status === Status.PAUSED) {
          if (s.status === Status.PAUSED) await task.resume({ id });
          await task.kill({ id, signal: 9, all: true });
          await task.wait({ id });
        }
      }
      await task.delete({ id });
    });
  } catch (e) {
    if (!force || !isKataError(e, Code.Unavailable)) throw e;
    await forceCleanup(ctx, store, id);
  }
}

export function registerLifecycle(program: Command, ctx: () => RuntimeContext): void {
  program
    .command("create")
    .description("create a container (and its VM when it is a sandbox)")
    .argument("<container-id>")
    .option("-b, --bundle <dir>", "OCI bundle directory", ".")
    .option("--pid-file <file>", "write the pid of the process that holds the container")
    .option("--console-socket <path>", "unix socket for the terminal's pty master (not supported yet)")
    .action(async (id: string, flags: CreateFlags) => {
      await createContainer(ctx(), id, flags);
    });

  program
    .command("start")
    .description("start created containers")
    .argument("<container-id...>")
    .action(async (ids: string[]) => {
      const store = new StateStore(ctx().flags.root);
      for (const id of ids) await withTask(store, id, (task) => task.start({ id }));
    });

  program
    .command("state")
    .description("print the OCI state of a container as JSON")
    .argument("<container-id>")
    .action(async (id: string) => {
      process.stdout.write(JSON.stringify(await ociState(ctx(), id), null, 2) + "\n");
    });

  program
    .command("kill")
    .description("send a signal (default SIGTERM) to a container's process")
    .argument("<container-id>")
    .argument("[signal]", "name (KILL, SIGKILL) or number", "SIGTERM")
    .option("-a, --all", "send the signal to every process of the container")
    .action(async (id: string, signal: string, flags: { all?: boolean }) => {
      const signo = parseSignal(signal);
      await withTask(new StateStore(ctx().flags.root), id, (task) =>
        task.kill({ id, signal: signo, all: flags.all === true }),
      );
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
      const r = await withTask(new StateStore(ctx().flags.root), id, (task) => task.wait({ id }));
      const at = r.exitedAt === undefined ? "" : ` ${timestampDate(r.exitedAt).toISOString()}`;
      process.stdout.write(`${r.exitStatus}${at}\n`);
    });
}
