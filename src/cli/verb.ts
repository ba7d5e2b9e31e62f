// Which verb a command line names, found before commander parses it: kata-ts-main.ts imports only that
// verb's module (a command's cost is mostly the modules it loads). Pure, so it is tested alone.

/**
 * The first argument that is not a global option (nor the value of one): the verb. `valueFlags` are the
 * global options that take a separate value (`--root DIR`); `--opt=value` is one argument. Undefined
 * when there is none (`kata-ts --help`, `kata-ts`) or after `--`.
 */
export function verbOf(args: readonly string[], valueFlags: ReadonlySet<string>): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? "";
    if (a === "--") return undefined;
    if (!a.startsWith("-") || a === "-") return a;
    if (!a.includes("=") && valueFlags.has(a)) i++;
  }
  return undefined;
}

/** runc's global `--rootless` takes true, false or auto; kata-ts runs as root, so only true is refused. */
export function checkRootless(value: string | undefined): string | undefined {
  if (value === undefined || value === "false" || value === "auto") return undefined;
  if (value === "true") {
    return "--rootless true: kata-ts runs as root (it boots VMs, makes network namespaces and mounts); rootless containers are not supported";
  }
  return `--rootless ${JSON.stringify(value)}: expected true, false or auto`;
}
