#!/usr/bin/env node
// Composition root of the `kata-ts` CLI: parses global flags, builds the real ports once, and maps
// every failure to one line on stderr and a non-zero exit code.

import { Command, CommanderError } from "commander";
import path from "node:path";
import { describeError } from "../base/errors.js";
import { agentBundleRelPath } from "../image/bundle-agent.js";
import { defaultImageDir } from "../image/guest-image.js";
import { imageCommand } from "../image/image-command.js";
import { NodeProcessRunner } from "../platform/process.js";
import { registerCheck } from "./commands/check.js";
import { registerEnv } from "./commands/env.js";
import { registerExec } from "./commands/exec.js";
import { registerFactory } from "./commands/factory.js";
import { registerInspect } from "./commands/inspect.js";
import { registerInstall } from "./commands/install.js";
import { NodeInstallFs } from "./commands/install-apply.js";
import { registerLifecycle } from "./commands/lifecycle.js";
import { registerRun } from "./commands/run.js";
import { registerVersion } from "./commands/version.js";
import {
  defaultRunDir,
  installRoot,
  launcherPath,
  makeContext,
  type GlobalFlags,
  type RuntimeContext,
} from "./runtime-context.js";

const program = new Command("kata-ts")
  .description("a secure container runtime: every pod runs in its own lightweight VM")
  .option("--root <dir>", "directory for runtime state", defaultRunDir)
  .option(
    "--config <file>",
    "configuration.toml (default: /etc/kata-ts/configuration.toml, then /usr/share/defaults/kata-ts/configuration.toml)",
  )
  .option("--log <file>", "append logs to this file")
  .option("--log-format <format>", "log format: text or json", "text")
  .option("--debug", "debug logging")
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

let context: RuntimeContext | undefined;
const ctx = (): RuntimeContext => {
  // Configuration warnings (unknown keys, ignored values) are said once per command, as kata-runtime does.
  context ??= makeContext(program.opts<GlobalFlags>(), {
    onConfigWarning: (w) => process.stderr.write(`kata-ts: warning: ${w}\n`),
  });
  return context;
};

registerLifecycle(program, ctx);
registerRun(program, ctx);
registerExec(program, ctx);
registerInspect(program, ctx);
registerCheck(program, ctx);
registerEnv(program, ctx);
registerFactory(program, ctx);
registerVersion(program, () => process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir);
registerInstall(program, {
  fs: new NodeInstallFs(),
  installRoot,
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
});
program.addCommand(
  imageCommand({
    runner: new NodeProcessRunner({ launcher: launcherPath }),
    agentBundlePath: path.join(installRoot, agentBundleRelPath),
    hypervisor: () => ctx().sandboxDeps().hypervisor,
    stderr: (t) => process.stderr.write(t),
    stdout: (t) => process.stdout.write(t),
  }),
);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode;
  } else {
    process.stderr.write(`kata-ts: ${describeError(e)}\n`);
    process.exitCode = 1;
  }
}
