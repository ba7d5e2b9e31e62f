// Runs the real `kata-ts` CLI (the compiled dist/) as a user would, and checks what it leaves behind.

import { spawn } from "node:child_process";
import { mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ignoreErrno } from "../../src/base/errors.js";
import { mountsUnder, parseMountInfo } from "../../src/platform/mountinfo.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const cliPath = path.join(repoRoot, "dist", "src", "cli", "kata-ts-main.js");

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
}

export function runCli(args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? "ignore" : "pipe", opts.stdoutFd ?? "pipe", opts.stderrFd ?? "pipe"],
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

async function qemuProcessesUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    // A process that exited since readdir has no /proc entry any more.
    const cmdline = (await readFile(`/proc/${entry}/cmdline`, "utf8").catch(ignoreErrno("ENOENT", "ESRCH"))) ?? "";
    if (cmdline.startsWith("qemu-system") && cmdline.includes(dir)) pids.push(Number(entry));
  }
  return pids;
}

/** Every host resource a run may create lives under its --root: none may remain. */
export async function leftovers(root: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await qemuProcessesUsing(root)) found.push(`qemu process ${pid}`);
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
  return sandboxIds.map((id) => `kata-ts-${id}`).filter((n) => names.has(n));
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
