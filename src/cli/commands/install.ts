// `kata-ts install`: links containerd-shim-kata-ts-v2 and kata-ts into a directory on containerd's PATH,
// prints containerd's runtime entries for kata-ts (stdout, so they can be pasted or redirected), and
// with --write merges them into containerd's config. What was done goes to stderr.

import path from "node:path";
import type { Command } from "commander";
import { Code, KataError } from "../../base/errors.js";
import { install, uninstall, type InstallFs } from "./install-apply.js";
import { containerdConfigFacts, runtimeEntries } from "./install-plan.js";

export interface InstallDeps {
  readonly fs: InstallFs;
  /** The checkout or release whose dist/ the links point into. */
  readonly installRoot: string;
  stdout(text: string): void;
  stderr(text: string): void;
}

interface InstallFlags {
  readonly binDir: string;
  readonly containerdConfig: string;
  readonly configPath?: string;
  readonly write?: boolean;
  readonly uninstall?: boolean;
  readonly force?: boolean;
}

export async function runInstall(deps: InstallDeps, flags: InstallFlags): Promise<void> {
  const binDir = path.resolve(flags.binDir);
  const containerdConfig = path.resolve(flags.containerdConfig);
  const base = { installRoot: deps.installRoot, binDir, containerdConfig };
  const say = (r: { actions: readonly string[]; warnings: readonly string[] }): void => {
    for (const a of r.actions) deps.stderr(`kata-ts install: ${a}\n`);
    for (const w of r.warnings) deps.stderr(`kata-ts install: warning: ${w}\n`);
  };
  if (flags.uninstall === true) {
    if (flags.write === true || flags.configPath !== undefined) {
      throw new KataError(Code.InvalidArgument, "--uninstall takes no --write or --config-path");
    }
    const r = await uninstall(deps.fs, base);
    say(r);
    if (r.actions.some((a) => a.includes(containerdConfig))) {
      deps.stderr("kata-ts install: restart containerd to unload it: systemctl restart containerd\n");
    }
    return;
  }
  const configPath = flags.configPath === undefined ? {} : { configPath: path.resolve(flags.configPath) };
  // Read before install makes its links, so a config that is not TOML is refused before any change.
  const facts = containerdConfigFacts(containerdConfig, await deps.fs.readText(containerdConfig));
  const r = await install(deps.fs, {
    ...base,
    ...configPath,
    write: flags.write === true,
    force: flags.force === true,
  });
  say(r);
  if (flags.write === true) {
    deps.stderr("kata-ts install: restart containerd to load it: systemctl restart containerd\n");
    return;
  }
  deps.stderr(
    `kata-ts install: add these lines to ${containerdConfig} (or run again with --write), then restart containerd:\n`,
  );
  deps.stdout(runtimeEntries(facts.version, configPath, facts.withRunc));
}

export function registerInstall(program: Command, deps: InstallDeps): void {
  program
    .command("install")
    .description("put the containerd shim on PATH and print (or, with --write, add) containerd's kata-ts runtime")
    .option("--bin-dir <dir>", "where the links go: a directory on containerd's PATH", "/usr/local/bin")
    .option("--containerd-config <file>", "containerd's config file", "/etc/containerd/config.toml")
    .option("--config-path <file>", "kata-ts's configuration.toml for this runtime (its ConfigPath option)")
    .option("--write", "merge the runtime into --containerd-config (a marked block; a backup is kept)")
    .option("--force", "replace files at the links' paths, or a backup, that kata-ts did not make")
    .option("--uninstall", "remove kata-ts's links and its block from --containerd-config")
    .action(async (flags: InstallFlags) => {
      await runInstall(deps, flags);
    });
}
