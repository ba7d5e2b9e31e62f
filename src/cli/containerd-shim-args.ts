// The shim binary's command line, in Go's flag syntax as containerd writes it
// (`-namespace ns -address a -publish-binary b -id x start`).

import { Code, KataError } from "../base/errors.js";

export const shimUsage = `usage: containerd-shim-kata-ts-v2 -namespace NS -address ADDR -id ID [-publish-binary B] [-bundle DIR] [-debug] start|delete
       containerd-shim-kata-ts-v2 -v`;

/** Flags that take a value, as containerd passes them; the rest are booleans. */
const valueFlags = new Set(["namespace", "address", "publish-binary", "id", "bundle", "socket"]);
const boolFlags = new Set(["debug", "v", "version", "info"]);

export interface ShimArgs {
  readonly flags: ReadonlyMap<string, string | true>;
  readonly action: string | undefined;
}

/** Go's flag syntax: `-name value`, `-name=value`, `--name`; flags stop at the first positional. */
export function parseShimArgs(argv: readonly string[]): ShimArgs {
  const flags = new Map<string, string | true>();
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") {
      i++;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") break;
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    if (valueFlags.has(name)) {
      const value = eq < 0 ? argv[++i] : body.slice(eq + 1);
      if (value === undefined) throw new KataError(Code.InvalidArgument, `flag -${name} needs a value\n${shimUsage}`);
      flags.set(name, value);
    } else if (boolFlags.has(name)) {
      flags.set(name, true);
    } else {
      throw new KataError(Code.InvalidArgument, `unknown flag -${name}\n${shimUsage}`);
    }
  }
  const rest = argv.slice(i);
  if (rest.length > 1)
    throw new KataError(Code.InvalidArgument, `one action expected, got ${rest.join(" ")}\n${shimUsage}`);
  return { flags, action: rest[0] };
}
