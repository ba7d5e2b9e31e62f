// `kata-ts run [--bundle DIR] ID`: create a sandbox for the bundle, run its container in the
// foreground with the caller's stdio, exit with the container's code, and tear everything down.
// SIGINT/SIGTERM are forwarded to the container; if it has not exited a few seconds later (or on a
// second signal) the sandbox is torn down.

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { constants } from "node:os";
import type { Command } from "commander";
import { checkId } from "../../base/ids.js";
import { describeError } from "../../base/errors.js";
import { loadBundle } from "../../oci/bundle.js";
import { ContainerRun } from "../../sandbox/run.js";
import type { RuntimeContext } from "../runtime-context.js";
import { resolveVmConfig } from "../vm-config.js";

const forwardGraceMs = 3000;

interface RunFlags {
  readonly bundle: string;
  readonly timingsFile?: string;
}

export function registerRun(program: Command, ctx: () => RuntimeContext): void {
  program
    .command("run")
    .description("create and start a container in a new VM, wait for it, and delete it")
    .argument("<container-id>", "container id")
    .option("-b, --bundle <dir>", "OCI bundle directory", ".")
    .option("--timings-file <file>", "write phase timings (JSON, milliseconds) to this file")
    .action(async (containerId: string, flags: RunFlags) => {
      const c = ctx();
      const id = checkId("container id", containerId);
      const bundle = await loadBundle(flags.bundle);
      const vm = await resolveVmConfig(c);
      const run = new ContainerRun(c.sandboxDeps(), {
        sandbox: { id, runDir: c.flags.root, hostname: bundle.spec.hostname ?? id, vm },
        containerId: id,
        bundle,
        stdin: process.stdin,
        stdout: process.stdout,
        stderr: process.stderr,
      });
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals): void => {
        signals++;
        if (signals > 1) {
          run.abort(`second ${sig}`);
          return;
        }
        run.signal(sig).catch((e: unknown) => {
          c.logger.warn("signal forwarding failed", { err: describeError(e) });
          run.abort(sig);
        });
        setTimeout(() => {
          run.abort(`${sig}: the container did not exit within ${forwardGraceMs} ms`);
        }, forwardGraceMs).unref();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      try {
        const r = await run.done;
        if (flags.timingsFile !== undefined) {
          await writeFile(path.resolve(flags.timingsFile), JSON.stringify(r.timings, null, 2) + "\n");
        }
        process.exitCode = r.exitCode;
      } catch (e) {
        if (signals > 0) {
          process.stderr.write(`kata-ts: ${describeError(e)}\n`);
          process.exitCode = 128 + constants.signals.SIGTERM;
          return;
        }
        throw e;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
}
