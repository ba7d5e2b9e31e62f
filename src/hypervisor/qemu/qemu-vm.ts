// A running QEMU VM: its process, QMP connection and console log. Teardown is bounded: QMP quit gets a
// deadline, then SIGKILL, which ends even a stopped or wedged QEMU.

import type { Socket } from "node:net";
import { rm } from "node:fs/promises";
import { deadline, delay, raceAbort } from "../../base/async.js";
import { Code, KataError, describeError, isKataError } from "../../base/errors.js";
import type { Logger } from "../../base/log.js";
import { describeExit, type Child, type ExitStatus } from "../../platform/process.js";
import type { Vm } from "../hypervisor.js";
import { Lifeline } from "../../platform/vm-guard.js";
import { readLogTail, type CappedLog } from "./console-log.js";
import { qemuIds } from "./args/plan.js";
import { isRecord, type QmpClient } from "./qmp/client.js";
import * as qmpCommand from "./qmp/commands.js";
import * as qmpHotplug from "./qmp/hotplug.js";

/** How long QEMU gets to answer QMP quit and exit before it is SIGKILLed. */
export const quitDeadlineMs = 2000;
/** Default deadline of pause and resume: a QEMU that answers neither within it is wedged. */
export const qmpCommandDeadlineMs = 5000;
/** How long saving or loading a template's device state may take (~30 ms measured: RAM is not in it). */
export const migrationDeadlineMs = 30_000;
/** How long the guest has to take a hot-added DIMM (its ACPI _OST); TCG runs the handler slowly. */
export const dimmOstDeadlineMs = 20_000;
const ostPollMs = 50;
/** Guest RAM stays in the template's memory file: only device state goes through the migration stream. */
const ignoreShared = { "x-ignore-shared": true } as const;

/**
 * QEMU 7.2 has no `file:` migration URI; `exec:` runs a shell, so the path must need no quoting (the
 * factory makes these paths itself; anything else is refused rather than escaped).
 */
export function shellSafePath(p: string): string {
  if (!/^\/[A-Za-z0-9_./+-]+$/.test(p) || p.split("/").includes("..")) {
    throw new KataError(Code.InvalidArgument, `state file path ${JSON.stringify(p)}: only [A-Za-z0-9_./+-] allowed`);
  }
  return p;
}

/** After QEMU exited, how long a console tail waits for the last console bytes still in the socket. */
const consoleDrainMs = 500;

export interface QemuVmParts {
  readonly id: string;
  readonly child: Child;
  readonly qmp: QmpClient;
  /** The connection to QEMU's console chardev, relayed into `log`. */
  readonly console: { readonly socket: Socket; readonly log: CappedLog };
  readonly agentSocketPath: string;
  /** Removed by stop(). */
  readonly vmDir: string;
  /** The tail of QEMU's stderr. */
  readonly stderr: () => string;
  readonly log: Logger;
}

export class QemuVm implements Vm {
  readonly id: string;
  readonly pid: number;
  readonly agentSocketPath: string;
  readonly consoleLogPath: string;
  readonly exited: Promise<ExitStatus>;
  readonly owner?: { readonly adopted: Promise<void>; letGo(): void };
  readonly #parts: QemuVmParts;
  readonly #consoleClosed: Promise<void>;
  #hasExited = false;
  /** DIMMs hot-added so far: each gets memory-backend `hpmemN` and device `dimmN`. */
  #dimms = 0;
  #stopping: Promise<void> | undefined;

  constructor(parts: QemuVmParts) {
    this.id = parts.id;
    this.pid = parts.child.pid;
    this.agentSocketPath = parts.agentSocketPath;
    this.consoleLogPath = parts.console.log.path;
    this.exited = parts.child.exited;
    this.#parts = parts;
    const { child } = parts;
    if (child instanceof Lifeline) {
      this.owner = {
        adopted: child.adopted,
        letGo: () => {
          child.kill();
        },
      };
    }
    this.#consoleClosed = new Promise((resolve) => {
      parts.console.socket.once("close", () => {
        resolve();
      });
    });
    void this.exited.then(() => {
      this.#hasExited = true;
    });
  }

  onAgentChannelClosed(listener: () => void): () => void {
    return this.#parts.qmp.onEvent((e) => {
      if (e.event !== "VSERPORT_CHANGE" || !isRecord(e.data)) return;
      if (e.data["id"] === qemuIds.agentPort && e.data["open"] === false) listener();
    });
  }

  async consoleTail(lines: number): Promise<string> {
    // A guest's last words (a panic) may still be in the socket when the exit is reported.
    if (this.#hasExited) await settledWithin(this.#consoleClosed, consoleDrainMs);
    await this.#parts.console.log.flush();
    const tail = (await readLogTail(this.consoleLogPath, lines)) ?? "(no console output)";
    const err = this.#parts.stderr().trim();
    return err === "" ? tail : `${tail}\n[qemu stderr] ${err}`;
  }

  /** Pauses the vCPUs; DEADLINE_EXCEEDED after qmpCommandDeadlineMs unless `signal` ends it sooner. */
  async pause(signal?: AbortSignal): Promise<void> {
    await this.#qmpWithDeadline((s) => qmpCommand.stop(this.#parts.qmp, s), signal);
  }

  /** Resumes the vCPUs; DEADLINE_EXCEEDED after qmpCommandDeadlineMs unless `signal` ends it sooner. */
  async resume(signal?: AbortSignal): Promise<void> {
    await this.#qmpWithDeadline((s) => qmpCommand.cont(this.#parts.qmp, s), signal);
  }

  /** Pauses the VM and writes its device state (not RAM: x-ignore-shared) to `statePath`. */
  async saveState(statePath: string, signal: AbortSignal): Promise<void> {
    const uri = `exec:cat > ${shellSafePath(statePath)}`;
    const d = deadline(migrationDeadlineMs, signal);
    const { qmp } = this.#parts;
    try {
      await qmpCommand.stop(qmp, d.signal);
      await qmpCommand.setMigrationCapabilities(qmp, ignoreShared, d.signal);
      await qmpCommand.migrate(qmp, uri, d.signal);
      await qmpCommand.waitMigration(qmp, d.signal);
    } finally {
      d.clear();
    }
  }

  /** On a VM started with `incoming`: loads the device state from `statePath`, then runs the guest. */
  async restoreState(statePath: string, signal: AbortSignal): Promise<void> {
    const uri = `exec:cat ${shellSafePath(statePath)}`;
    const d = deadline(migrationDeadlineMs, signal);
    const { qmp } = this.#parts;
    try {
      await qmpCommand.setMigrationCapabilities(qmp, ignoreShared, d.signal);
      await qmpCommand.migrateIncoming(qmp, uri, d.signal);
      await qmpCommand.waitMigration(qmp, d.signal);
      // QEMU without -S starts the guest itself once the state is in; cont makes sure (a no-op then).
      await qmpCommand.cont(qmp, d.signal);
    } finally {
      d.clear();
    }
  }

  async hotplugVcpu(signal: AbortSignal): Promise<boolean> {
    const { qmp } = this.#parts;
    return this.#qmpWithDeadline(async (s) => {
      const [slot] = qmpHotplug.freeCpuSlots(await qmpHotplug.queryHotpluggableCpus(qmp, s), 1);
      if (slot === undefined) return false;
      await qmpHotplug.deviceAdd(qmp, { driver: slot.type, id: qmpHotplug.cpuDeviceId(slot), ...slot.props }, s);
      return true;
    }, signal);
  }

  async hotplugMemory(sizeMiB: number, signal: AbortSignal): Promise<string> {
    const n = this.#dimms;
    const backend = `hpmem${n}`;
    const device = `dimm${n}`;
    const { qmp, log } = this.#parts;
    await this.#qmpWithDeadline(async (s) => {
      await qmpHotplug.objectAddMemoryRam(qmp, backend, sizeMiB * 1024 * 1024, s);
      try {
        await qmpHotplug.deviceAdd(qmp, { driver: "pc-dimm", id: device, memdev: backend }, s);
      } catch (e) {
        // Nothing uses the backend yet: it goes, so the next attempt can reuse its id.
        await qmpHotplug.objectDel(qmp, backend, s).catch((err: unknown) => {
          log.warn("remove memory backend after a failed device_add", { backend, err: describeError(err) });
        });
        throw e;
      }
    }, signal);
    this.#dimms++;
    return device;
  }

  async memoryTaken(device: string, signal: AbortSignal): Promise<void> {
    const { qmp } = this.#parts;
    const d = deadline(dimmOstDeadlineMs, signal);
    try {
      for (;;) {
        const st = (await qmpHotplug.queryAcpiOspmStatus(qmp, d.signal)).find((x) => x.device === device);
        if (st !== undefined && st.source === 1) {
          if (st.status !== 0) {
            throw new KataError(
              Code.Internal,
              `the guest refused memory DIMM ${device} (ACPI _OST status ${st.status})`,
            );
          }
          return;
        }
        await delay(ostPollMs, d.signal);
      }
    } catch (e) {
      if (isKataError(e, Code.DeadlineExceeded) && !signal.aborted) {
        throw new KataError(
          Code.DeadlineExceeded,
          `the guest did not take memory DIMM ${device} (no ACPI _OST within ${dimmOstDeadlineMs} ms)`,
        );
      }
      throw e;
    } finally {
      d.clear();
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async release(): Promise<void> {
    const { qmp, console: guestConsole } = this.#parts;
    this.#stopping ??= Promise.resolve();
    qmp.close();
    guestConsole.socket.destroy();
    await guestConsole.log.close();
  }

  async #qmpWithDeadline<T>(run: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const d = deadline(qmpCommandDeadlineMs, signal);
    try {
      return await run(d.signal);
    } finally {
      d.clear();
    }
  }

  async #stop(): Promise<void> {
    const { child, qmp, log, console: guestConsole } = this.#parts;
    if (!this.#hasExited) {
      const quitting = deadline(quitDeadlineMs);
      try {
        await qmpCommand.quit(qmp, quitting.signal);
        await raceAbort(this.exited, quitting.signal, "qemu exit after quit");
      } catch (e) {
        log.debug("qemu did not quit; killing it", { err: describeError(e) });
      } finally {
        quitting.clear();
      }
      // SIGKILL ends even a SIGSTOPped QEMU or one whose QMP is wedged; a no-op once it exited.
      child.kill("SIGKILL");
    }
    const status = await this.exited;
    qmp.close();
    guestConsole.socket.destroy();
    await guestConsole.log.close();
    const dropped = guestConsole.log.dropped;
    if (dropped > 0) log.warn("guest console output dropped", { bytes: dropped });
    log.info("qemu stopped", { exit: describeExit(status) });
    await rm(this.#parts.vmDir, { recursive: true, force: true });
  }
}

/** Waits until `p` settles or `ms` pass, whichever is first; `p` must not reject. */
function settledWithin(p: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    void p.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
