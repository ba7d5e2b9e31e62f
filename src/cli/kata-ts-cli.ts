// Composition root of the `kata-ts` CLI: parses global flags, builds the real ports once, and maps
// every failure to one line on stderr and a non-zero exit code. Each verb's module is imported only when
// that verb runs (all of them for help): `state` costs the state file and a connect, not the protobuf
// descriptors, ttRPC and VM code that create needs (runc's `state` takes a few milliseconds; callers
// such as podman poll it). Started by kata-ts-main.ts (ES modules) or from the host's startup snapshot
// (host-snapshot-main.ts), where every verb's module is loaded already and these imports cost nothing.

import { Command, CommanderError } from "commander";
import { Code, KataError, describeError } from "../base/errors.js";
import { defaultImageDir } from "../image/manifest.js";
import { registerVersion } from "./commands/version.js";
import { defaultRunDir } from "./paths.js";
import type { GlobalFlags, RuntimeContext } from "./runtime-context.js";
import { checkRootless, verbOf } from "./verb.js";
import { verbGroups } from "./verb-groups.js";

/** Runs one command line (`args`: what follows the program name); sets process.exitCode. */
export async function runKataTs(args: readonly string[]): Promise<void> {
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
    // runc's other global flags, which callers (podman, conmon, CRI-O) pass: accepted where harmless.
    .option("--systemd-cgroup", "accepted for runc's callers: a systemd cgroupsPath (slice:prefix:name) is used as is")
    .option("--rootless <value>", "accepted for runc's callers: false or auto (kata-ts runs as root)")
    .option("--criu <path>", "accepted for runc's callers: checkpoint and restore are not supported")
    // As runc: global flags before the verb, the verb's own after it (spec --rootless is not the global one).
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  let context: RuntimeContext | undefined;
  let contextModule: typeof import("./runtime-context.js") | undefined;
  const ctx = (): RuntimeContext => {
    if (contextModule === undefined) throw new Error("internal: runtime context used by a verb that did not load it");
    // Configuration warnings (unknown keys, ignored values) are said once per command, as kata-runtime does.
    context ??= contextModule.makeContext(program.opts<GlobalFlags>(), {
      onConfigWarning: (w) => process.stderr.write(`kata-ts: warning: ${w}\n`),
    });
    return context;
  };
  registerVersion(program, () => process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir);

  try {
    const valueFlags = new Set(
      program.options
        .filter((o) => o.required || o.optional)
        .flatMap((o) => [o.long, o.short].filter((f) => f !== undefined)),
    );
    const verb = verbOf(args, valueFlags);
    // --version needs no verb (its handler prints and exits). No verb otherwise, help, or one we do not
    // know: every verb, so commander lists them (or suggests one).
    const wanted = verbGroups.filter((g) => g.verbs.includes(verb ?? ""));
    const versionOnly = verb === undefined && args.some((a) => a === "-v" || a === "--version");
    const load = versionOnly ? [] : wanted.length === 0 ? verbGroups : wanted;
    if (load.some((g) => g.context)) contextModule = await import("./runtime-context.js");
    for (const g of load) await g.register(program, ctx, () => program.opts<GlobalFlags>().root);
    program.hook("preAction", () => {
      const refusal = checkRootless(program.opts<{ rootless?: string }>().rootless);
      if (refusal !== undefined) throw new KataError(Code.InvalidArgument, refusal);
    });
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
    } else {
      process.stderr.write(`kata-ts: ${describeError(e)}\n`);
      process.exitCode = 1;
    }
  }
}
