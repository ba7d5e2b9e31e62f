// Composition root of the per-sandbox service (`containerd-shim-kata-ts-v2`). One process per pod holds
// the VM, the agent connection and the containers' state, and serves the containerd task API on a unix
// socket. `serve` is how the OCI CLI starts it: it prints "ready <socket>" (or "error <message>") on
// stdout once, then serves until the sandbox is deleted. Started by shim-main.ts (ES modules) or from
// the host's startup snapshot (host-snapshot-main.ts).

import { rm } from "node:fs/promises";
import { parseArgs } from "node:util";
import { describeError } from "../base/errors.js";
import { checkId } from "../base/ids.js";
import { defaultRunDir, makeContext } from "./runtime-context.js";
import { createEventPublisher } from "../shim/events.js";
import { snapshotBlobOf } from "./host-snapshot.js";
import { hostService } from "./service-host.js";
import { LogFifo } from "../shim/log-fifo.js";

async function serve(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      root: { type: "string", default: defaultRunDir },
      id: { type: "string" },
      log: { type: "string" },
      config: { type: "string" },
      "log-format": { type: "string", default: "json" },
      debug: { type: "boolean", default: false },
      // Set by containerd-shim-kata-ts-v2: containerd's namespace and its events service (TTRPC_ADDRESS).
      namespace: { type: "string" },
      "events-address": { type: "string" },
      // containerd's `log` fifo in the sandbox's bundle: the log lines go there too (see log-fifo.ts).
      "log-fifo": { type: "string" },
    },
  });
  const sandboxId = checkId("sandbox id", values.id ?? "");
  const fifoPath = values["log-fifo"];
  const fifo = fifoPath === undefined ? undefined : new LogFifo(fifoPath);
  const ctx = makeContext(
    {
      root: values.root,
      ...(values.log === undefined ? {} : { log: values.log }),
      ...(values.config === undefined ? {} : { config: values.config }),
      logFormat: values["log-format"] === "text" ? "text" : "json",
      debug: values.debug,
    },
    fifo === undefined
      ? {}
      : {
          logTee: (line) => {
            fifo.write(line);
          },
        },
  );
  ctx.logger.info("service started", {
    sandboxId,
    pid: process.pid,
    // Which way it started (host-snapshot.ts): a service slow to be ready may have missed the blob.
    startedFrom: snapshotBlobOf(process.execArgv) === undefined ? "modules" : "snapshot",
    ...(fifoPath === undefined ? {} : { logFifo: fifoPath }),
  });
  const eventsAddress = values["events-address"];
  // Under containerd (the shim binary passes both), task events go to containerd's event service.
  const publisher =
    eventsAddress === undefined
      ? undefined
      : createEventPublisher({
          ttrpcAddress: eventsAddress,
          namespace: values.namespace ?? "default",
          logger: ctx.logger.child({ component: "events" }),
        });
  const service = await hostService(ctx, sandboxId, publisher === undefined ? {} : { publisher });
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => {
      ctx.logger.info("signal: tearing the sandbox down", { signal: sig });
      void service.pod.shutdown().catch((e: unknown) => {
        ctx.logger.error("teardown failed", { err: describeError(e) });
      });
    });
  }
  process.stdout.write(`ready ${service.socketPath}\n`);
  await service.ended;
  // Let the last response reach its caller before the socket goes.
  await new Promise((r) => setTimeout(r, 50));
  await rm(service.socketPath, { force: true });
  await publisher?.close();
  if (fifo !== undefined && fifo.dropped > 0) {
    ctx.logger.info("log lines not delivered to containerd's log fifo", { dropped: fifo.dropped });
  }
  fifo?.close();
  // Exiting closes the clients' connections, not close(): a client that waits for its connection to
  // close (the CLI after a sandbox's delete) must then find this process gone, not on its way out.
  process.exit(0);
}

/** `args`: what follows the program name (`serve --root R --id S ...`). Sets process.exitCode. */
export async function runShimService(args: readonly string[]): Promise<void> {
  const [mode, ...rest] = args;
  try {
    if (mode !== "serve") throw new Error(`unknown mode ${String(mode)} (this build supports: serve)`);
    await serve(rest);
  } catch (e) {
    process.stdout.write(`error ${describeError(e)}\n`);
    process.exitCode = 1;
  }
}
