// `npm run build` step: builds the host's startup snapshot (host-snapshot.ts) on this host, with the
// node that runs the build. esbuild bundles host-snapshot-main.js (tsc output) to one CommonJS file,
// `node --build-snapshot` runs it into a blob, the blob is tried once, and bin/launch.sh's key for this
// node, CPU and directory is written next to it. Build-time only: nothing at run time imports this.

import { execFile } from "node:child_process";
import { readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { Code, KataError } from "../base/errors.js";
import { hostBlobKeyRelPath, hostBlobRelPath, hostBundleRelPath } from "./host-snapshot.js";

const run = promisify(execFile);

export const hostSnapshotEntryRelPath = "dist/src/cli/host-snapshot-main.js";
export const launchScriptRelPath = "bin/launch.sh";
/** The one module that may use import.meta.url in the bundle: it stands for that module's own URL. */
const importMetaUser = "dist/src/cli/paths.js";

// CommonJS has no import.meta; paths.ts derives the install root from its own URL, so the bundle
// gives it the URL it has in dist/. Evaluated while the snapshot is built: the blob holds this
// directory, which is why bin/launch.sh's key names it.
const importMetaBanner = [
  "var __kataTsImportMetaUrl = require('node:url').pathToFileURL(",
  `  require('node:path').join(__dirname, ${JSON.stringify(path.relative(path.dirname(hostBundleRelPath), importMetaUser))}),`,
  ").href;",
].join("\n");

/** What esbuild's metafile says of one import of an output file. */
interface BundleImport {
  readonly path: string;
  readonly kind: string;
  readonly external?: boolean;
}

export interface HostSnapshot {
  readonly blob: string;
  readonly sizeBytes: number;
}

/** Throws INTERNAL when the bundle, the snapshot or its trial run fails; leaves no blob behind then. */
export async function buildHostSnapshot(installRoot: string, node: string): Promise<HostSnapshot> {
  const at = (rel: string): string => path.join(installRoot, rel);
  const blob = at(hostBlobRelPath);
  const key = at(hostBlobKeyRelPath);
  await rm(blob, { force: true });
  await rm(key, { force: true });
  try {
    const result = await build({
      entryPoints: [at(hostSnapshotEntryRelPath)],
      outfile: at(hostBundleRelPath),
      bundle: true,
      platform: "node",
      target: "node20",
      format: "cjs",
      define: { "import.meta.url": "__kataTsImportMetaUrl" },
      banner: { js: importMetaBanner },
      metafile: true,
      absWorkingDir: installRoot,
      logLevel: "silent",
    });
    await checkImportMetaUsers(installRoot, Object.keys(result.metafile.inputs));
    const kept = keptDynamicImports(result.metafile);
    if (kept.length > 0) throw new Error(`the bundle keeps dynamic imports of ${kept.join(", ")}`);
    const tmp = `${blob}.tmp`;
    await run(node, ["--snapshot-blob", tmp, "--build-snapshot", at(hostBundleRelPath)], {
      cwd: path.dirname(blob),
      maxBuffer: 1 << 20,
    });
    // A blob that loads but does not run would make every command fail: try one before using it.
    const tried = await run(node, ["--snapshot-blob", tmp, "--", "kata-ts", "--version"], { maxBuffer: 1 << 20 });
    if (!tried.stdout.startsWith("kata-ts version")) {
      throw new Error(`the blob's \`kata-ts --version\` printed ${JSON.stringify(tried.stdout.slice(0, 200))}`);
    }
    const k = await run("/bin/sh", [
      "-c",
      '. "$0" && snapshot_key "$1" "$2"',
      at(launchScriptRelPath),
      node,
      installRoot,
    ]);
    await rename(tmp, blob);
    await writeFile(key, k.stdout);
    return { blob, sizeBytes: (await stat(blob)).size };
  } catch (e) {
    await rm(`${blob}.tmp`, { force: true });
    await rm(blob, { force: true });
    throw new KataError(Code.Internal, "build the host's startup snapshot", { cause: e });
  }
}

/**
 * What the bundle still imports with import(): esbuild keeps it for a module it leaves out (a node:
 * built-in), and a process started from a snapshot has no dynamic import(), so it would fail only when
 * that code runs.
 */
export function keptDynamicImports(metafile: {
  readonly outputs: Readonly<Record<string, { readonly imports: readonly BundleImport[] }>>;
}): string[] {
  return Object.values(metafile.outputs).flatMap((out) =>
    out.imports.filter((i) => i.kind === "dynamic-import" && i.external === true).map((i) => i.path),
  );
}

/** Any other module using import.meta would be handed paths.js's URL: refuse rather than misplace it. */
async function checkImportMetaUsers(installRoot: string, inputs: readonly string[]): Promise<void> {
  for (const input of inputs) {
    const file = path.resolve(installRoot, input);
    if (file === path.join(installRoot, importMetaUser)) continue;
    if ((await readFile(file, "utf8")).includes("import.meta")) {
      throw new Error(`${input} uses import.meta, which the host bundle only provides for ${importMetaUser}`);
    }
  }
}
