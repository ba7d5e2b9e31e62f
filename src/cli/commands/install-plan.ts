// `kata-ts install` as data: which links to make, containerd's runtime entries for kata-ts, and the
// containerd config with kata-ts's marked block merged in or taken out. Pure: install-apply.ts does the
// file system. The block is appended rather than merged into the user's tables so that their text and
// comments stay byte-for-byte and `--uninstall` can give the file back as it was.

import path from "node:path";
import { parse } from "smol-toml";
import { Code, KataError } from "../../base/errors.js";

/** The CRI runtime handler name (a RuntimeClass's `handler`). */
export const runtimeHandler = "kata-ts";
/** containerd turns this into the binary name `containerd-shim-kata-ts-v2` and looks it up on its PATH. */
export const runtimeType = "io.containerd.kata-ts.v2";
export const shimName = "containerd-shim-kata-ts-v2";
export const cliName = "kata-ts";
/** The node label deploy/kata-ts-deploy.yaml sets once a node can run kata-ts, and the RuntimeClass selects. */
export const nodeLabel = "katats.io/kata-ts-runtime";

export const blockBegin = "# BEGIN kata-ts";
export const blockEnd = "# END kata-ts";
const createdMarker = "# kata-ts install created this file; --uninstall removes it when nothing else is left";

/**
 * What each link on PATH runs, relative to the install root (a checkout): the launcher that starts it
 * from the host's startup snapshot when it fits (bin/launch.sh).
 */
const entryPoints: Readonly<Record<string, string>> = {
  [shimName]: `bin/${shimName}`,
  [cliName]: `bin/${cliName}`,
};
/** What older installs linked: the ES module entries. Still ours, to replace or remove. */
const oldEntryPoints: Readonly<Record<string, string>> = {
  [shimName]: "dist/src/cli/containerd-shim-main.js",
  [cliName]: "dist/src/cli/kata-ts-main.js",
};
/** A release (deploy/Dockerfile) carries shell wrappers here that run its own Node, for hosts without one. */
export const releaseWrapperDir = "dist/bin";

export interface LinkPlan {
  readonly name: string;
  /** The link on PATH. */
  readonly path: string;
  /** What it points to. */
  readonly target: string;
}

export function planLinks(installRoot: string, binDir: string, hasReleaseWrappers: boolean): LinkPlan[] {
  return Object.entries(entryPoints).map(([name, entry]) => ({
    name,
    path: path.join(binDir, name),
    target: hasReleaseWrappers ? path.join(installRoot, releaseWrapperDir, name) : path.join(installRoot, entry),
  }));
}

/**
 * A link that some kata-ts install made (an older one, npm's global link, a release's): ours to replace
 * or remove. A launcher's path (`<root>/bin/<name>`) says too little on its own (/usr/bin/<name> ends
 * the same): install-apply.ts also takes a link to this install's own launcher as its own.
 */
export function isKataTsLinkTarget(name: string, target: string): boolean {
  const entry = oldEntryPoints[name];
  return entry !== undefined && (target.endsWith(`/${entry}`) || target.endsWith(`/${releaseWrapperDir}/${name}`));
}

/** containerd's config versions: 1 (or no `version`), 2 (containerd 1.x) and 3 (containerd 2.x). */
export type ConfigVersion = 1 | 2 | 3;

/** The CRI plugin's id in each config version, as kata-deploy picks it. */
export function criPluginId(version: ConfigVersion): string {
  switch (version) {
    case 1:
      return "cri";
    case 2:
      return "io.containerd.grpc.v1.cri";
    case 3:
      return "io.containerd.cri.v1.runtime";
  }
}

/** The TOML table header of kata-ts's runtime, without brackets. */
export function runtimeTable(version: ConfigVersion, name = runtimeHandler): string {
  const id = criPluginId(version);
  return `plugins.${version === 1 ? id : `"${id}"`}.containerd.runtimes.${name}`;
}

export interface RuntimeOptions {
  /** kata-ts's configuration.toml, passed to the shim as runtimeoptions.v1.Options.config_path. */
  readonly configPath?: string;
}

/**
 * The runtime entries for containerd's CRI plugin, as a user would paste them. `withRunc` names runc as
 * well: containerd (1.6, checked) replaces its default runtimes with the ones a config names, so a config
 * that names only kata-ts loses runc, its default_runtime_name, and the CRI plugin fails to load.
 */
export function runtimeEntries(version: ConfigVersion, opts: RuntimeOptions, withRunc = false): string {
  const table = runtimeTable(version);
  const lines = [
    `[${table}]`,
    `  runtime_type = "${runtimeType}"`,
    "  # io.katacontainers.config.* pod annotations reach kata-ts, which applies only those its",
    "  # configuration allows (enable_annotations, valid_*_paths)",
    '  pod_annotations = ["io.katacontainers.*"]',
    "  # a privileged pod must not get the host's devices: its containers run in the VM",
    "  privileged_without_host_devices = true",
  ];
  if (opts.configPath !== undefined) {
    lines.push(`[${table}.options]`, `  ConfigPath = ${JSON.stringify(opts.configPath)}`);
  }
  if (withRunc) {
    lines.push(
      "# containerd's default runtime, named again: a config that names runtimes replaces the default ones",
      `[${runtimeTable(version, "runc")}]`,
      '  runtime_type = "io.containerd.runc.v2"',
    );
  }
  return lines.join("\n") + "\n";
}

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function dig(v: unknown, keys: readonly string[]): unknown {
  let cur = v;
  for (const k of keys) {
    if (!isTable(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

function parseToml(file: string, text: string, what: string): Table {
  try {
    return parse(text);
  } catch (e) {
    throw new KataError(Code.FailedPrecondition, `${file}: ${what} is not valid TOML`, { cause: e });
  }
}

function configVersion(file: string, config: Table): ConfigVersion {
  const v = config["version"];
  if (v === undefined) return 1;
  if (v === 1 || v === 2 || v === 3) return v;
  throw new KataError(
    Code.FailedPrecondition,
    `${file}: version = ${JSON.stringify(v)}: kata-ts knows containerd config versions 1, 2 and 3`,
  );
}

/**
 * True when the config relies on containerd's default runc runtime (default_runtime_name unset or
 * "runc", no runc table, no version 1 `default_runtime`), which naming kata-ts's runtime would drop.
 */
function reliesOnDefaultRunc(config: Table, pluginId: string): boolean {
  const containerd = dig(config, ["plugins", pluginId, "containerd"]);
  const name = dig(containerd, ["default_runtime_name"]) ?? "runc";
  if (name !== "runc" || dig(containerd, ["default_runtime", "runtime_type"]) !== undefined) return false;
  return dig(containerd, ["runtimes", "runc"]) === undefined;
}

export interface ConfigFacts {
  readonly version: ConfigVersion;
  /** The entries must name runc too (runtimeEntries' withRunc). */
  readonly withRunc: boolean;
}

/** What the entries depend on in a containerd config (missing, empty or comments only: version 2). */
export function containerdConfigFacts(file: string, text: string | undefined): ConfigFacts {
  const config = parseToml(file, removeBlock(file, text ?? "").text, "the containerd config");
  const version = Object.keys(config).length === 0 ? 2 : configVersion(file, config);
  return { version, withRunc: reliesOnDefaultRunc(config, criPluginId(version)) };
}

export interface BlockRemoval {
  /** The text without kata-ts's block (the user's text). */
  readonly text: string;
  readonly removed: boolean;
  /** kata-ts install created the file, and nothing but the block is in it: remove the file. */
  readonly deleteFile: boolean;
}

/**
 * Takes kata-ts's block out, with the newline install put before it, so a file comes back byte-for-byte.
 * A block at the very start had no newline put before it (install wrote an empty or missing file).
 */
export function removeBlock(file: string, text: string): BlockRemoval {
  const begin = /^# BEGIN kata-ts(?::.*)?$/m.exec(text);
  if (begin === null) return { text, removed: false, deleteFile: false };
  const endRe = /^# END kata-ts$/gm;
  endRe.lastIndex = begin.index;
  const end = endRe.exec(text);
  if (end === null) {
    throw new KataError(
      Code.FailedPrecondition,
      `${file}: "${blockBegin}" without a "${blockEnd}" line after it: fix the file by hand`,
    );
  }
  const start = begin.index === 0 ? 0 : begin.index - 1;
  let stop = end.index + blockEnd.length;
  if (text[stop] === "\n") stop++;
  const block = text.slice(begin.index, stop);
  const rest = text.slice(0, start) + text.slice(stop);
  if (/^# BEGIN kata-ts(?::.*)?$/m.test(rest)) {
    throw new KataError(Code.FailedPrecondition, `${file}: more than one "${blockBegin}" block: fix the file by hand`);
  }
  return { text: rest, removed: true, deleteFile: rest === "" && block.includes(createdMarker) };
}

export interface MergePlan {
  /** The whole new file. */
  readonly text: string;
  /** False when the file already has exactly this block. */
  readonly changed: boolean;
  /** The file does not exist, or kata-ts install created it. */
  readonly created: boolean;
  readonly version: ConfigVersion;
  readonly pluginId: string;
  readonly warnings: readonly string[];
}

/**
 * The containerd config `file` (its text; undefined when missing) with kata-ts's block appended, or its
 * block replaced. Refuses a kata-ts runtime table the user wrote themselves, a config that is not TOML,
 * and a result that would not be TOML or would not have kata-ts's runtime where containerd looks.
 */
export function mergeContainerdConfig(file: string, text: string | undefined, opts: RuntimeOptions): MergePlan {
  const existing = text ?? "";
  const removal = removeBlock(file, existing);
  const userText = removal.text;
  const config = parseToml(file, userText, "the containerd config");
  const keyless = Object.keys(config).length === 0;
  // A file with no settings gets version 2 (what containerd 1.6's `config default` prints); a file with
  // settings keeps its version: adding `version` to it would change what its other tables mean.
  const version = keyless ? 2 : configVersion(file, config);
  const pluginId = criPluginId(version);
  if (dig(config, ["plugins", pluginId, "containerd", "runtimes", runtimeHandler]) !== undefined) {
    throw new KataError(
      Code.FailedPrecondition,
      `${file} already has [${runtimeTable(version)}] outside kata-ts's "${blockBegin}" block: ` +
        "remove that table and run again, or keep it and leave the file alone",
    );
  }
  const warnings: string[] = [];
  const disabled = config["disabled_plugins"];
  if (Array.isArray(disabled) && (disabled.includes(pluginId) || disabled.includes("cri"))) {
    warnings.push(
      `${file} disables the CRI plugin (disabled_plugins): Kubernetes cannot use kata-ts until it is enabled; ctr run --runtime ${runtimeType} works without it`,
    );
  }
  const created = text === undefined || removal.deleteFile;
  const block = [
    `${blockBegin}: written by \`kata-ts install --write\`; \`kata-ts install --uninstall\` removes this block`,
    ...(created ? [createdMarker] : []),
    ...(keyless ? ["version = 2"] : []),
    runtimeEntries(version, opts, reliesOnDefaultRunc(config, pluginId)).trimEnd(),
    blockEnd,
  ].join("\n");
  const merged = userText === "" ? `${block}\n` : `${userText}\n${block}\n`;
  const check = parseToml(file, merged, "the config with kata-ts's block appended");
  if (dig(check, ["plugins", pluginId, "containerd", "runtimes", runtimeHandler, "runtime_type"]) !== runtimeType) {
    throw new KataError(
      Code.FailedPrecondition,
      `${file}: kata-ts's block appended does not define [${runtimeTable(version)}] (a table or key before it swallows it?): add the entries by hand`,
    );
  }
  return { text: merged, changed: merged !== existing, created, version, pluginId, warnings };
}
