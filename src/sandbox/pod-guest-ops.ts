// Verbs that act on a container through the guest and change no lifecycle status beyond pause/resume:
// signals, pause and resume, resources, stats, processes, terminal size. The caller (Pod) holds the
// container's lock where a verb changes state.

import { Code, KataError } from "../base/errors.js";
import { errField } from "../base/log.js";
import { ociVersion, type LinuxResources } from "../oci/spec.js";
import type { StatsContainerResponse } from "../protocol/gen/agent_pb.js";
import { ociToGrpcSpec } from "../protocol/oci-spec/convert.js";
import { checkPsArgs, psPidColumn } from "../protocol/ps-args.js";
import type { PodCore } from "./pod-core.js";
import { updatedResources } from "./vm-resize.js";

/** One row of `ps`: the guest pid (from the PID column) and the guest's ps line split on blanks. */
export interface PsRow {
  readonly pid: number;
  readonly fields: readonly string[];
}

/** Signals a process; SIGKILL/SIGTERM of a stopped one is a no-op (CRI kills to be sure). */
export async function signalProcess(
  core: PodCore,
  req: { id: string; execId: string; signo: number; all: boolean },
  signal: AbortSignal,
): Promise<void> {
  const c = core.container(req.id);
  const p = c.process(req.execId);
  const isInit = p === c.init;
  const stopping = req.signo === 9 || req.signo === 15;
  if (p.status === "stopped") {
    if (stopping) return;
    throw new KataError(
      Code.FailedPrecondition,
      `${p.cell.kind} ${p.execId} is stopped: cannot send signal ${req.signo}`,
    );
  }
  const sandbox = core.requireSandbox();
  // The VM is gone, and every process in it: there is nothing left to stop.
  if (stopping && sandbox.lost.aborted) return;
  if (p.status === "created") {
    // Nothing runs yet: KILL or TERM stops it for good (OCI kill of a created container).
    if (isInit) {
      await core.agentCall(signal, (s) =>
        sandbox.agent.signalProcess({ containerId: req.id, execId: "", signal: req.signo }, { signal: s }),
      );
    }
    if (stopping) {
      p.markStopped(128 + req.signo);
      if (isInit) await core.persist();
    }
    return;
  }
  const guestExecId = isInit ? (req.all ? "" : req.id) : req.execId;
  await core.agentCall(signal, (s) =>
    sandbox.agent.signalProcess({ containerId: req.id, execId: guestExecId, signal: req.signo }, { signal: s }),
  );
}

export async function changeRunState(
  core: PodCore,
  id: string,
  event: "pause" | "resume",
  signal: AbortSignal,
): Promise<void> {
  const c = core.container(id);
  c.init.cell.expect(event);
  const agent = core.requireSandbox().agent;
  await core.agentCall(signal, (s) =>
    event === "pause"
      ? agent.pauseContainer({ containerId: id }, { signal: s })
      : agent.resumeContainer({ containerId: id }, { signal: s }),
  );
  c.init.cell.apply(event);
  await core.persist();
}

export async function updateResources(
  core: PodCore,
  id: string,
  resources: LinuxResources,
  signal: AbortSignal,
): Promise<void> {
  const c = core.container(id);
  c.init.cell.require("update");
  const spec = ociToGrpcSpec({ ociVersion, linux: { resources } });
  // Kata's order: the VM grows first (q35), so raised limits have CPUs and memory behind them.
  const next = updatedResources(c.resources, resources);
  await core.growVm({ id, resources: next }, signal);
  await core.agentCall(signal, (s) =>
    core.requireSandbox().agent.updateContainer({ containerId: id, resources: spec.Linux?.Resources }, { signal: s }),
  );
  c.resources = next;
}

export async function containerStats(core: PodCore, id: string, signal: AbortSignal): Promise<StatsContainerResponse> {
  core.container(id).init.cell.require("stats");
  return core.agentCall(signal, (s) => core.requireSandbox().agent.statsContainer({ containerId: id }, { signal: s }));
}

/** The container's processes as the guest's ps shows them (header first; `args` go to ps); none unless it runs. */
export async function listProcesses(
  core: PodCore,
  id: string,
  args: readonly string[],
  signal: AbortSignal,
): Promise<{ header: readonly string[]; rows: PsRow[] }> {
  checkPsArgs(args);
  const c = core.container(id);
  if (c.init.status !== "running" && c.init.status !== "paused") return { header: [], rows: [] };
  const r = await core.agentCall(signal, (s) =>
    core.requireSandbox().agent.listProcesses({ containerId: id, format: "table", args: [...args] }, { signal: s }),
  );
  return parsePsTable(Buffer.from(r.processList).toString("utf8"));
}

/** Resizes a process's terminal (ResizePty); a process not running yet keeps the size it was given. */
export async function resizeTerminal(
  core: PodCore,
  req: { id: string; execId: string; width: number; height: number },
  signal: AbortSignal,
): Promise<void> {
  const c = core.container(req.id);
  const p = c.process(req.execId);
  if (!p.stdio.terminal) {
    throw new KataError(Code.FailedPrecondition, `process ${p.execId} of ${req.id} has no terminal`);
  }
  if (p.status === "created") {
    // Nothing runs on the terminal yet: the size is applied when it starts (pendingTerminalSize).
    p.pendingSize = { width: req.width, height: req.height };
    return;
  }
  if (p.status !== "running") return;
  await core.agentCall(signal, (s) =>
    core
      .requireSandbox()
      .agent.ttyWinResize(
        { containerId: req.id, execId: p === c.init ? "" : req.execId, row: req.height, column: req.width },
        { signal: s },
      ),
  );
}

/**
 * Applies a size asked for before the process started. A failure is logged, not thrown: the process
 * runs, on a terminal of its spec's size.
 */
export async function applyPendingSize(core: PodCore, id: string, execId: string, signal: AbortSignal): Promise<void> {
  const p = core.container(id).process(execId);
  const size = p.pendingSize;
  if (size === undefined) return;
  p.pendingSize = undefined;
  await resizeTerminal(core, { id, execId, ...size }, signal).catch((e: unknown) => {
    core.log.warn("terminal resize asked for before the start not applied", {
      containerId: id,
      execId,
      err: errField(e),
    });
  });
}

/** Parses the guest's ps table (a header line with a PID column, then one line per process). */
export function parsePsTable(text: string): { header: readonly string[]; rows: PsRow[] } {
  const [head = "", ...lines] = text.split("\n");
  const rows: PsRow[] = [];
  if (lines.every((l) => l.trim() === "")) return { header: head.trim() === "" ? [] : head.trim().split(/\s+/), rows };
  const col = psPidColumn(head);
  for (const line of lines) {
    const fields = line.trim().split(/\s+/);
    const pid = Number(fields[col]);
    if (line.trim() === "" || !Number.isSafeInteger(pid) || pid <= 0) continue;
    rows.push({ pid, fields });
  }
  return { header: head.trim() === "" ? [] : head.trim().split(/\s+/), rows };
}
