// `npm run bench -- cli`: each short CLI verb's own cost, kata-ts against runc on the same bundle,
// interleaved per round (one running container each; kata-ts's in one VM booted once): `--version`,
// `list`, `state`, `ps --format json`, and Node's own start (`node -e 0`), the floor of any kata-ts verb.

import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { NodeProcessRunner } from "../src/platform/process.js";
import { makeBusyboxBundle } from "../src/tools/busybox-bundle.js";
import { median } from "./boot.js";
import { benchDate, writeRaw, writeSection } from "./report.js";

/** What a round measures: runc's and kata-ts's wall time of one verb, in ms. */
export interface VerbSample {
  readonly verb: string;
  readonly runcMs: number;
  readonly kataMs: number;
}

export interface CliResults {
  readonly nodeMs: number[];
  readonly samples: VerbSample[];
  readonly load1: number[];
}

const verbs: readonly { readonly name: string; readonly args: (id: string) => string[] }[] = [
  { name: "--version", args: () => ["--version"] },
  { name: "list", args: () => ["list"] },
  { name: "state", args: (id) => ["state", id] },
  { name: "ps --format json", args: (id) => ["ps", "--format", "json", id] },
];

/** Runs a command with its output discarded; its wall time in ms. Fails on a non-zero exit. */
function timed(bin: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"], env: env ?? process.env });
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.once("error", reject);
    // "exit", not "close": after `run -d` the container holds the stdio it was given, as with runc.
    child.once("exit", (code) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve(ms);
      else reject(new Error(`${bin} ${args.join(" ")}: exit ${code}: ${err}`));
    });
  });
}

export async function benchCli(opts: { runs: number; cli: string; imageDir: string }): Promise<CliResults> {
  const work = await mkdtemp(path.join(tmpdir(), "kata-ts-bench-cli-"));
  const kataRoot = path.join(work, "kata-root");
  const runcRoot = path.join(work, "runc-root");
  const env = { ...process.env, KATA_TS_IMAGE_DIR: opts.imageDir };
  const id = "benchcli";
  const kata = (args: readonly string[]): Promise<number> => timed(opts.cli, ["--root", kataRoot, ...args], env);
  const runc = (args: readonly string[]): Promise<number> => timed("runc", ["--root", runcRoot, ...args]);
  try {
    const bundle = await makeBusyboxBundle(
      { runner: new NodeProcessRunner() },
      { dir: path.join(work, "bundle"), args: ["sh", "-c", "while true; do sleep 1; done"] },
    );
    await runc(["run", "-d", "--bundle", bundle, id]);
    await kata(["run", "-d", "--bundle", bundle, id]);
    const results: CliResults = { nodeMs: [], samples: [], load1: [] };
    for (let i = 0; i < opts.runs; i++) {
      results.load1.push(loadavg()[0] ?? 0);
      results.nodeMs.push(await timed(process.execPath, ["-e", "0"]));
      for (const v of verbs) {
        const runcMs = await runc(v.args(id));
        const kataMs = await kata(v.args(id));
        results.samples.push({ verb: v.name, runcMs, kataMs });
      }
    }
    return results;
  } finally {
    // A failed teardown is said, not thrown over the benchmark's own error.
    const said = (e: unknown): void => {
      process.stderr.write(`bench cli: teardown: ${e instanceof Error ? e.message : String(e)}\n`);
    };
    await runc(["delete", "--force", id]).catch(said);
    await kata(["delete", "--force", id]).catch(said);
    await rm(work, { recursive: true, force: true });
  }
}

export function renderCliReport(r: CliResults, meta: { date: string; host: string }): string {
  const ms = (x: number): string => `${Math.round(x)} ms`;
  const rows = verbs.map((v) => {
    const s = r.samples.filter((x) => x.verb === v.name);
    return `| \`${v.name}\` | ${ms(median(s.map((x) => x.runcMs)))} | ${ms(median(s.map((x) => x.kataMs)))} |`;
  });
  return [
    `${meta.date}, ${meta.host}; ${r.nodeMs.length} interleaved rounds, medians; 1-minute load ${median(r.load1).toFixed(1)}.`,
    "",
    "| verb | runc | kata-ts |",
    "|---|---|---|",
    ...rows,
    `| Node's start (\`node -e 0\`), the floor of every kata-ts verb | | ${ms(median(r.nodeMs))} |`,
  ].join("\n");
}

export async function writeCliResults(r: CliResults, doc: string, raw: string, host: string): Promise<string> {
  const date = benchDate();
  await writeRaw(raw, "cli", { date, host, ...r });
  const section = renderCliReport(r, { date, host });
  await writeSection(doc, "cli", "CLI verbs", section);
  return section;
}
