// `kata-ts run [--bundle DIR] ID`: create + start + wait + delete, in the foreground, with the caller's
// stdio; exits with the container's exit code. A sandbox's service is hosted in this process (other
// CLI commands reach it on its socket as usual). SIGINT/SIGTERM are forwarded to the container; if it
// has not exited a few seconds later it is killed, and a second signal tears the sandbox down at once.

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { constants } from "node:os";
import type { Command } from "commander";
import { Code, KataError, describeError } from "../../base/errors.js";
import { errField } from "../../base/log.js";
import { checkId } from "../../base/ids.js";
import { containerRole } from "../../oci/annotations.js";
import { loadBundle } from "../../oci/bundle.js";
import { StateStore } from "../../sandbox/persist.js";
import type { RuntimeContext } from "../runtime-context.js";
import { connectTask, withTask, type TaskConnection } from "../service-client.js";
import { createContainer, deleteContainer } from "./lifecycle.js";
import { prepareStdio, type PreparedStdio } from "../stdio-bridge.js";
import { attachTerminal, type AttachedTerminal } from "../terminal.js";
import { hostService, type HostedService } from "../service-host.js";
import { loadServiceDeadlines } from "../task-deadlines.js";
import { checkPreserveFds, preserveFdsOption } from "../preserve-fds.js";
import { checkKeep, keepOption, noNewKeyringOption, noPivotOption, noSubreaperOption } from "../runc-flags.js";
import { recordStandIn } from "../stand-in.js";

const forwardGraceMs = 3000;

interface RunFlags {
  readonly bundle: string;
  readonly timingsFile?: string;
  readonly preserveFds?: string;
  readonly detach?: boolean;
  readonly pidFile?: string;
  readonly consoleSocket?: string;
}

/**
 * `run -d` (runc's): create and start, then return; the container runs on under its service, and is
 * deleted by `delete` as after create. A start that fails takes the container away again (runc's too).
 */
async function runDetached(ctx: RuntimeContext, id: string, flags: RunFlags): Promise<void> {
  await createContainer(ctx, id, {
    bundle: flags.bundle,
    ...(flags.pidFile === undefined ? {} : { pidFile: flags.pidFile }),
    ...(flags.consoleSocket === undefined ? {} : { consoleSocket: flags.consoleSocket }),
    ...(flags.preserveFds === undefined ? {} : { preserveFds: flags.preserveFds }),
  });
  try {
    await withTask(ctx, id, (task) => task.start({ id }));
  } catch (e) {
    await deleteContainer(ctx, id, true).catch((undo: unknown) => {
      ctx.logger.error("run -d: remove the container whose start failed", { containerId: id, err: errField(undo) });
    });
    throw e;
  }
}

export async function runContainer(ctx: RuntimeContext, containerId: string, flags: RunFlags): Promise<number> {
  const t0 = performance.now();
  const mark: Record<string, number> = {};
  const at = (phase: string): void => {
    mark[phase] = performance.now() - t0;
  };
  checkPreserveFds(flags.preserveFds);
  const id = checkId("container id", containerId);
  const bundle = await loadBundle(flags.bundle);
  const role = containerRole(bundle.spec, id);
  const store = new StateStore(ctx.flags.root);
  let service: HostedService | undefined;
  let conn: TaskConnection | undefined;
  let signals = 0;
  let firstSignal: NodeJS.Signals | undefined;
  let started = false;
  let stdio: PreparedStdio | undefined;
  let tty: AttachedTerminal | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    firstSignal ??= sig;
    const task = conn?.task;
    if (!started || signals > 1 || task === undefined) {
      // Not running yet (or asked twice): stop everything now. Closing our connection cancels a
      // create in progress; the hosted service then tears down what it made.
      void conn?.close();
      void service?.pod.shutdown().catch((e: unknown) => {
        ctx.logger.warn("teardown after signal failed", { err: describeError(e) });
      });
      return;
    }
    const failed = (e: unknown): void => {
      // The container may have exited meanwhile; its exit status is what run reports.
      ctx.logger.debug("forward signal", { containerId: id, signal: sig, err: errField(e) });
    };
    void task.kill({ id, signal: constants.signals[sig], all: false }).catch(failed);
    setTimeout(() => {
      void task.kill({ id, signal: 9, all: true }).catch(failed);
    }, forwardGraceMs).unref();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    if (role.type === "sandbox") service = await hostService(ctx, role.sandboxId);
    const deadlines = await loadServiceDeadlines(() => ctx.config(), ctx.logger);
    conn = await connectTask(service?.socketPath ?? store.socketPath(role.sandboxId), {
      sandboxId: role.sandboxId,
      deadlines,
    });
    // A signal that came before there was anything to cancel: stop here.
    if (firstSignal !== undefined) throw new KataError(Code.Cancelled, `run ${id}: ${firstSignal}`);
    const task = conn.task;
    // Fifos live in the sandbox's state dir, so whatever removes the sandbox removes them too.
    stdio = await prepareStdio(ctx.runner, path.join(store.sandboxDir(role.sandboxId), "io"));
    const terminal = bundle.spec.process?.terminal === true;
    await task.create({ id, bundle: bundle.dir, terminal, ...stdio.paths });
    // This process is the container's on the host: it lives as long and exits with its status.
    await recordStandIn(store.sandboxDir(role.sandboxId), id, process.pid);
    at("containerCreated");
    await task.start({ id });
    started = true;
    if (terminal) tty = attachTerminal(task, id, "", ctx.logger);
    at("containerStarted");
    const { exitStatus } = await task.wait({ id });
    await stdio.done;
    at("exited");
    await reportOom(store, role.sandboxId, id);
    await task.delete({ id });
    await conn.close();
    conn = undefined;
    if (service !== undefined) {
      await service.ended;
      await service.close();
    }
    at("destroyed");
    if (flags.timingsFile !== undefined) {
      const timings: Record<string, number> = {};
      for (const [k, v] of Object.entries(service?.pod.timings ?? {})) {
        timings[k === `firstOutput:${id}` ? "firstOutput" : k] = v - t0;
      }
      Object.assign(timings, mark);
      await writeFile(path.resolve(flags.timingsFile), JSON.stringify(timings, null, 2) + "\n");
    }
    return exitStatus;
  } catch (e) {
    await conn?.close();
    if (service !== undefined) {
      await service.pod.shutdown().catch((err: unknown) => {
        ctx.logger.warn("teardown after failure", { err: describeError(err) });
      });
      await service.close();
    }
    if (firstSignal !== undefined) {
      // The signal, not the cancelled call it broke, is what the user needs to hear.
      const during = started ? "while the container ran" : "before the container started";
      const gone = service === undefined ? `container ${id} was removed` : `container ${id} and its VM were torn down`;
      process.stderr.write(`kata-ts: ${firstSignal} ${during}: ${gone}\n`);
      ctx.logger.debug("run interrupted", { containerId: id, err: describeError(e) });
      return 128 + constants.signals[firstSignal];
    }
    throw e;
  } finally {
    tty?.restore();
    await stdio?.cleanup();
    process.stdin.destroy();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** Says so when the guest's out-of-memory killer killed processes of the container (runc users see 137). */
async function reportOom(store: StateStore, sandboxId: string, id: string): Promise<void> {
  const kills = (await store.load(sandboxId))?.containers.find((c) => c.id === id)?.oomKills ?? 0;
  if (kills > 0) {
    process.stderr.write(`kata-ts: the out-of-memory killer killed ${kills} process(es) of container ${id}\n`);
  }
}

export function registerRun(program: Command, ctx: () => RuntimeContext): void {
  program
    .command("run")
    .description("create and start a container (in a new VM for a sandbox), wait for it, and delete it")
    .argument("<container-id>", "container id")
    .option("-b, --bundle <dir>", "OCI bundle directory", ".")
    .option("--timings-file <file>", "write phase timings (JSON, milliseconds) to this file")
    .option("-d, --detach", "create and start the container, then return (it runs on; delete it after)")
    .option("--pid-file <file>", "with -d: write the pid of the process that holds the container")
    .option("--console-socket <path>", "with -d and a terminal: unix socket for the pty master")
    .option(...preserveFdsOption)
    .option(...noPivotOption)
    .option(...noNewKeyringOption)
    .option(...noSubreaperOption)
    .option(...keepOption)
    .action(async (containerId: string, flags: RunFlags & { keep?: boolean }) => {
      checkKeep(flags.keep === true, flags.detach === true);
      if (flags.detach === true) {
        await runDetached(ctx(), containerId, flags);
        return;
      }
      if (flags.pidFile !== undefined || flags.consoleSocket !== undefined) {
        throw new KataError(Code.InvalidArgument, "--pid-file and --console-socket go with run -d (or create)");
      }
      process.exitCode = await runContainer(ctx(), containerId, flags);
    });
}
