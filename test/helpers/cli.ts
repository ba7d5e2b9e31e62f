// Runs the real `kata-ts` CLI (the compiled dist/) as a user would, and checks what it leaves behind.

import { spawn, type StdioOptions } from "node:child_process";
import { mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ignoreErrno } from "../../src/base/errors.js";
import { mountsUnder, parseMountInfo } from "../../src/platform/mountinfo.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const cliPath = path.join(repoRoot, "dist", "src", "cli", "kata-ts-main.js");
/**
 * What users run (package.json's bin, `kata-ts install`'s link): from the host's startup snapshot when
 * the build made one (bin/launch.sh). runCli uses it; tests that spawn cliPath run the ES modules.
 */
export const cliLauncherPath = path.join(repoRoot, "bin", "kata-ts");

/** A per-sandbox service's command line: shim-main.js, or the startup snapshot's shim-service entry. */
export function isServiceArgv(argv: readonly string[]): boolean {
  return (
    argv.some((a) => a.endsWith("shim-main.js")) || (argv.includes("--snapshot-blob") && argv.includes("shim-service"))
  );
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

export interface CliOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly input?: string | Buffer;
  /** Called with all stdout so far after each chunk; `kill` signals the CLI process. */
  readonly onStdout?: (soFar: string, kill: (signal: NodeJS.Signals) => void) => void;
  readonly timeoutMs?: number;
  /** Give the CLI this fd as stdout (a file), instead of a pipe read by the test. */
  readonly stdoutFd?: number;
  /** Likewise for stderr: a created container keeps the caller's stdio open until it exits (as with runc). */
  readonly stderrFd?: number;
  /**
   * Descriptors the CLI inherits without close-on-exec, as after `exec 200>file; kata-ts ...`: child fd
   * number -> this process's fd.
   */
  readonly strayFds?: Readonly<Record<number, number>>;
}

/** Node's stdio option for the CLI: 0-2, then each stray descriptor at its own number. */
function cliStdio(opts: CliOptions): StdioOptions {
  const stdio: StdioOptions = [
    opts.input === undefined ? "ignore" : "pipe",
    opts.stdoutFd ?? "pipe",
    opts.stderrFd ?? "pipe",
  ];
  for (const [at, fd] of Object.entries(opts.strayFds ?? {})) {
    while (stdio.length < Number(at)) stdio.push("ignore");
    stdio[Number(at)] = fd;
  }
  return stdio;
}

export function runCli(args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cliLauncherPath, args, {
      env: opts.env ?? process.env,
      stdio: cliStdio(opts),
    });
    const out: Buffer[] = [];
    let err = "";
    child.stdout?.on("data", (d: Buffer) => {
      out.push(d);
      opts.onStdout?.(Buffer.concat(out).toString(), (sig) => child.kill(sig));
    });
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 120_000);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/** A private --root for one test, so leak checks see only that test's state. */
export async function makeRunRoot(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), "kata-ts-it-"));
}

/** Command lines (NUL-separated) of every process; one that exits while being read is skipped. */
async function processes(): Promise<{ pid: number; argv: string[] }[]> {
  const out: { pid: number; argv: string[] }[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const text = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(ignoreErrno("ENOENT", "ESRCH"));
    if (text !== undefined) out.push({ pid: Number(entry), argv: text.split("\0").filter((a) => a !== "") });
  }
  return out;
}

/**
 * QEMU processes and process stand-ins whose arguments name a path under `dir`, and per-sandbox services
 * of --root `dir`.
 */
async function processesUsing(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const { pid, argv } of await processes()) {
    const [first = ""] = argv;
    if (path.basename(first).startsWith("qemu-system") && argv.some((a) => a.includes(dir))) {
      found.push(`qemu process ${pid}`);
    }
    if (argv.some((a) => a.endsWith("relay-main.js")) && argv.some((a) => a.includes(dir))) {
      found.push(`process stand-in ${pid}`);
    }
    const at = argv.indexOf("--root");
    if (isServiceArgv(argv) && at >= 0 && argv[at + 1] === dir) {
      found.push(`sandbox service ${pid} (${argv.slice(at).join(" ")})`);
    }
  }
  return found;
}

/** Every host resource a run may create lives under its --root: none may remain. */
export async function leftovers(root: string): Promise<string[]> {
  const found: string[] = [];
  found.push(...(await processesUsing(root)));
  for (const m of mountsUnder(parseMountInfo(await readFile("/proc/self/mountinfo", "utf8")), root)) {
    found.push(`mount ${m}`);
  }
  for (const dir of ["vm", path.join("shared", "sandboxes"), "sbs", "containers-mapping", "fifo"]) {
    const entries = (await readdir(path.join(root, dir)).catch(ignoreErrno("ENOENT"))) ?? [];
    for (const e of entries) found.push(`${dir}/${e}`);
  }
  return found;
}

export async function removeRunRoot(root: string): Promise<void> {
  if ((await leftovers(root)).length === 0) await rm(root, { recursive: true, force: true });
}

/** Network namespaces kata-ts would have created for these sandbox ids that still exist. */
export async function netnsLeft(sandboxIds: readonly string[]): Promise<string[]> {
  const names = new Set((await readdir("/var/run/netns").catch(ignoreErrno("ENOENT"))) ?? []);
  // Any --root's: kata-ts-<id> for the default root, kata-ts-<8 hex of the root>-<id> for the others.
  return [...names].filter((n) =>
    sandboxIds.some(
      (id) => n === `kata-ts-${id}` || new RegExp(`^kata-ts-[0-9a-f]{8}-${id.replace(/[.+]/g, "\\$&")}$`).test(n),
    ),
  );
}

/**
 * Runs the CLI with stdout and stderr going to files in `dir` (a created container holds its
 * caller's stdio until it exits, as with runc: the test's pipes would never close).
 */
export async function runCliToFiles(
  args: readonly string[],
  dir: string,
  opts: Omit<CliOptions, "stdoutFd" | "stderrFd"> = {},
): Promise<CliResult> {
  const tag = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const outFile = path.join(dir, `cli-${tag}.out`);
  const errFile = path.join(dir, `cli-${tag}.err`);
  const out = await open(outFile, "a");
  const err = await open(errFile, "a");
  try {
    const r = await runCli(args, { ...opts, stdoutFd: out.fd, stderrFd: err.fd });
    return { ...r, stdout: await readFile(outFile), stderr: await readFile(errFile, "utf8") };
  } finally {
    await out.close();
    await err.close();
  }
}
