// Waiting for a booting VM's agent, and what is kept when it never answers: the console of a boot that
// failed outlives its VM directory (which the failed create removes with everything else), as
// <root>/failed-boots/<sandbox id>.console.log, named in the error. Bounded: each copy is at most
// keptConsoleMaxBytes, and only the newest maxKeptConsoles stay.

import { open, readdir, rm, stat, writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { abortError, deadline } from "../base/async.js";
import { Code, KataError, describeError, errnoOf, isKataError } from "../base/errors.js";
import { errField, type Logger } from "../base/log.js";
import { AgentClient, runningAgentProbeIntervalMs } from "../agent-client/agent-client.js";
import type { Vm } from "../hypervisor/hypervisor.js";

export const failedBootsDirName = "failed-boots";
export const keptConsoleMaxBytes = 1024 * 1024;
export const maxKeptConsoles = 8;
const suffix = ".console.log";

/** The files to remove so that `keep` remain: the oldest first (by mtime, then name). */
export function consolesToPrune(files: readonly { name: string; mtimeMs: number }[], keep: number): string[] {
  const sorted = [...files].sort((a, b) => b.mtimeMs - a.mtimeMs || (a.name < b.name ? 1 : -1));
  return sorted.slice(keep).map((f) => f.name);
}

/** The last `max` bytes of the file, or an empty buffer when it does not exist. */
async function tail(file: string, max: number): Promise<Buffer> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return Buffer.alloc(0);
    throw e;
  }
  try {
    const size = (await fh.stat()).size;
    const start = Math.max(0, size - max);
    const buf = Buffer.alloc(size - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * Copies the end of a capped console log (`<log>.1` then `<log>`) into `<runDir>/failed-boots/`; returns the
 * copy's path, or undefined when it could not be made (`onError` is told why: the boot's own error matters
 * more than this one).
 */
export async function keepBootConsole(
  runDir: string,
  sandboxId: string,
  consoleLogPath: string,
  onError: (e: unknown) => void,
): Promise<string | undefined> {
  const dir = path.join(runDir, failedBootsDirName);
  const dest = path.join(dir, `${sandboxId}${suffix}`);
  try {
    const current = await tail(consoleLogPath, keptConsoleMaxBytes);
    const older = await tail(`${consoleLogPath}.1`, keptConsoleMaxBytes - current.length);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(dest, Buffer.concat([older, current]), { mode: 0o600 });
    const names = (await readdir(dir)).filter((n) => n.endsWith(suffix));
    const files = await Promise.all(
      names.map(async (name) => ({ name, mtimeMs: (await stat(path.join(dir, name))).mtimeMs })),
    );
    for (const name of consolesToPrune(files, maxKeptConsoles)) {
      if (name !== path.basename(dest)) await rm(path.join(dir, name), { force: true });
    }
    return dest;
  } catch (e) {
    onError(e);
    return undefined;
  }
}

/** Connects to the agent and waits for it to answer, within the boot deadline; names why it failed. */
export async function connectAgent(
  vm: Vm,
  cfg: { id: string; runDir: string; bootTimeoutMs: number; agentWasRunning?: boolean },
  log: Logger,
  signal: AbortSignal,
): Promise<AgentClient> {
  const vmGone = new AbortController();
  void vm.exited.then(() => {
    vmGone.abort(new KataError(Code.Unavailable, "the VM exited during boot"));
  });
  const bootDeadline = deadline(cfg.bootTimeoutMs, signal, vmGone.signal);
  const boot = bootDeadline.signal;
  let client: AgentClient | undefined;
  try {
    client = await AgentClient.connect(vm.agentSocketPath, { signal: boot, logger: log });
    // A VM from the factory: its agent waits for a host, reopening its port (agent-client.ts waitReady).
    await client.waitReady(boot, cfg.agentWasRunning === true ? { probeIntervalMs: runningAgentProbeIntervalMs } : {});
    return client;
  } catch (e) {
    await client?.close();
    if (signal.aborted) throw abortError(signal, "boot");
    const reason = vmGone.signal.aborted
      ? "the VM exited before its agent answered"
      : isKataError(e, Code.DeadlineExceeded) || boot.aborted
        ? `the guest agent did not answer within ${cfg.bootTimeoutMs} ms`
        : `the guest agent failed: ${describeError(e)}`;
    const lastLines = await vm.consoleTail(20);
    const kept = await keepBootConsole(cfg.runDir, cfg.id, vm.consoleLogPath, (err) => {
      log.warn("could not keep the console of the failed boot", { err: errField(err) });
    });
    const where = kept === undefined ? "" : ` (all of it, capped, in ${kept})`;
    throw new KataError(
      Code.DeadlineExceeded,
      `boot sandbox ${cfg.id}: ${reason}; guest console${where}:\n${lastLines}`,
      {
        cause: e,
      },
    );
  } finally {
    bootDeadline.clear();
  }
}
