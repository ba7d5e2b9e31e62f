// The QEMU driver: plans the command line (args/), starts QEMU, and holds its QMP connection.
// KVM when /dev/kvm is usable, TCG software emulation otherwise.

import { readFileSync } from "node:fs";
import { mkdir, rm, stat } from "node:fs/promises";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import path from "node:path";
import { abortError, deadline, settlesWithin } from "../../base/async.js";
import { Code, KataError, describeError, errnoOf, messageOf, wrap } from "../../base/errors.js";
import type { Logger } from "../../base/log.js";
import type { HostProbe } from "../../platform/probe.js";
import { describeExit, type Child, type ProcessRunner } from "../../platform/process.js";
import { dialUnix, notReadyErrnos } from "../../platform/unix-socket.js";
import { guardArgv, Lifeline } from "../../platform/vm-guard.js";
import { sharedFsTag } from "../../protocol/guest-paths.js";
import type { AdoptedVmConfig, Hypervisor, Vm, VmConfig } from "../hypervisor.js";
import { planQemuArgs } from "./args/plan.js";
import type { Accel } from "./args/switches.js";
import { CappedLog, defaultConsoleLogMaxBytes, relayConsole } from "./console-log.js";
import { fastKernelParams, tscEarlyKhz } from "./kernel-params.js";
import { QemuVm } from "./qemu-vm.js";
import { QmpClient } from "./qmp/client.js";
import { qemuSocketNames } from "./socket-names.js";

export interface QemuDeps {
  readonly runner: ProcessRunner;
  readonly probe: HostProbe;
  readonly logger: Logger;
}

export interface QemuOptions {
  readonly binary: string;
  /** How long QEMU may take to open its console and QMP sockets. */
  readonly controlTimeoutMs?: number;
  /** Cap of the guest console log (console.log; console.log.1 holds as much again). */
  readonly consoleLogMaxBytes?: number;
  /** -bios for q35 (e.g. qboot); microvm uses its own. */
  readonly firmware?: string;
  /**
   * native/kata-ts-confine: QEMU starts under its seccomp filter, unable to make setuid/setgid files,
   * device nodes or file capabilities in the shared directories (see docs/security.md).
   */
  readonly confine?: string;
  /** native/kata-ts-vmguard: runs a cached VM's QEMU (VmConfig.guard). */
  readonly vmGuard?: string;
}

/** The unix sockets QEMU listens on, in the VM's directory. */
export { qemuSocketNames };

/** How long a QEMU whose control sockets failed may take to exit by itself (its own error, then). */
const exitGraceMs = 500;

const stderrTailBytes = 8192;
const defaultControlTimeoutMs = 10_000;

/** A guarded QEMU's stderr, in its VM directory (the guard outlives whoever started it). */
export const qemuStderrFile = "qemu.stderr";

/** The last `max` bytes of a small file, "" when there is none. */
function fileTail(p: string, max: number): string {
  try {
    const b = readFileSync(p);
    return b.subarray(Math.max(0, b.length - max)).toString("utf8");
  } catch {
    return "";
  }
}

/** What to run and how to say the file is missing: the image builder makes both files. */
async function requireFile(what: string, p: string): Promise<void> {
  try {
    const st = await stat(p);
    if (!st.isFile()) throw new KataError(Code.NotFound, `${what} ${p} is not a file`);
  } catch (e) {
    if (e instanceof KataError) throw e;
    if (errnoOf(e) === "ENOENT") {
      throw new KataError(Code.NotFound, `${what} ${p} not found (build the guest image: kata-ts image build)`);
    }
    throw wrap(e, `${what} ${p}`);
  }
}

export class QemuHypervisor implements Hypervisor {
  readonly name = "qemu";
  readonly #deps: QemuDeps;
  readonly #opts: QemuOptions;

  constructor(deps: QemuDeps, opts: QemuOptions) {
    this.#deps = deps;
    this.#opts = opts;
  }

  accel(): Accel {
    return this.#deps.probe.kvmUsable() ? "kvm" : "tcg";
  }

  async startVm(config: VmConfig, signal: AbortSignal): Promise<Vm> {
    await requireFile("guest kernel", config.kernelPath);
    await requireFile("guest initrd", config.initrdPath);
    for (const d of config.readonlyDisks ?? []) await requireFile("guest disk", d.path);
    const accel = this.accel();
    const tsc = accel === "tcg" ? tscEarlyKhz(this.#deps.probe.cpuinfo()) : undefined;
    const paths = {
      qmp: path.join(config.vmDir, qemuSocketNames.qmp),
      agent: path.join(config.vmDir, qemuSocketNames.agent),
      consoleSocket: path.join(config.vmDir, qemuSocketNames.console),
      consoleLog: path.join(config.vmDir, "console.log"),
      pid: path.join(config.vmDir, "qemu.pid"),
      stderr: path.join(config.vmDir, qemuStderrFile),
    };
    const args = planQemuArgs({
      machineType: config.machineType,
      accel,
      cpuModel: accel === "kvm" ? "host" : "max",
      ...(config.tcgTbSizeMiB === undefined ? {} : { tcgTbSizeMiB: config.tcgTbSizeMiB }),
      ...(config.reclaimGuestFreedMemory === true ? { freePageReporting: true } : {}),
      vcpus: config.vcpus,
      memoryMiB: config.memoryMiB,
      ...(config.hotplug === undefined ? {} : { hotplug: config.hotplug }),
      kernelPath: config.kernelPath,
      initrdPath: config.initrdPath,
      ...(config.readonlyDisks === undefined ? {} : { readonlyDisks: config.readonlyDisks }),
      kernelParams: [...fastKernelParams(config.machineType, accel, tsc), ...config.kernelParams].join(" "),
      consoleSocketPath: paths.consoleSocket,
      qmpSocketPath: paths.qmp,
      agentSocketPath: paths.agent,
      pidfilePath: paths.pid,
      ...(config.sharedDir === undefined ? {} : { sharedDir: { path: config.sharedDir, mountTag: sharedFsTag } }),
      ...(this.#opts.firmware === undefined || config.machineType !== "q35" ? {} : { firmware: this.#opts.firmware }),
      ...(config.nics === undefined ? {} : { nics: config.nics }),
      ...(config.memoryFile === undefined
        ? {}
        : { memoryBackend: { memPath: config.memoryFile.path, share: config.memoryFile.share } }),
      ...(config.incoming === true ? { incoming: "defer" as const } : {}),
    });
    await mkdir(config.vmDir, { recursive: true, mode: 0o700 });
    let child: Child;
    let stderr = "";
    try {
      // setpriv --pdeathsig: QEMU dies with the process that holds it, even if that one is SIGKILLed;
      // nothing else could talk to the VM afterwards.
      const binary = config.binaryPath ?? this.#opts.binary;
      const guarded =
        this.#deps.probe.which("setpriv") === undefined
          ? [binary, ...args]
          : ["setpriv", "--pdeathsig", "KILL", "--", binary, ...args];
      const confined = this.#opts.confine === undefined ? guarded : [this.#opts.confine, "--", ...guarded];
      const argv =
        config.netnsPath === undefined ? confined : ["nsenter", `--net=${config.netnsPath}`, "--", ...confined];
      if (config.guard !== undefined) {
        child = await this.#spawnGuarded(argv, config.guard.controlSocket, paths.stderr, signal);
      } else {
        const [file, ...rest] = argv;
        // Its own session: a terminal's Ctrl-C (to `kata-ts run`, which may host the service) is for the
        // CLI to forward to the container, not for QEMU to die of.
        // CAST: argv always starts with the program.
        child = await this.#deps.runner.spawn(file as string, rest, {
          detached: true,
          stdio: ["ignore", "ignore", "pipe"],
        });
        child.stderr?.on("data", (d: Buffer) => {
          stderr = (stderr + d.toString("utf8")).slice(-stderrTailBytes);
        });
      }
    } catch (e) {
      await rm(config.vmDir, { recursive: true, force: true });
      throw e;
    }
    const stderrTail = config.guard === undefined ? () => stderr : () => fileTail(paths.stderr, stderrTailBytes);
    return this.#connect(
      { id: config.id, vmDir: config.vmDir, accel, machine: config.machineType, onConsoleLine: config.onConsoleLine },
      child,
      stderrTail,
      signal,
    );
  }

  /**
   * VM cache: QEMU under kata-ts-vmguard (src/platform/vm-guard.ts). The returned Child is this
   * process's lifeline: QEMU's pid, its exit, and letting go of it kills QEMU.
   */
  async #spawnGuarded(argv: string[], controlSocket: string, stderrFile: string, signal: AbortSignal): Promise<Child> {
    if (this.#opts.vmGuard === undefined) {
      throw new KataError(Code.Unimplemented, "the VM guard helper (kata-ts-vmguard) is not configured");
    }
    const [file, ...rest] = guardArgv(this.#opts.vmGuard, controlSocket, stderrFile, argv);
    // CAST: guardArgv always starts with the helper.
    const guard = await this.#deps.runner.spawn(file as string, rest, {
      detached: true,
      stdio: ["ignore", "ignore", "pipe", "pipe"],
    });
    let early = "";
    guard.stderr?.on("data", (d: Buffer) => {
      early = (early + d.toString("utf8")).slice(-stderrTailBytes);
    });
    const d = deadline(this.#opts.controlTimeoutMs ?? defaultControlTimeoutMs, signal);
    try {
      // CAST: stdio[3] is a "pipe": Node's socketpair end.
      const life = await Lifeline.from(guard.stdio[3] as Duplex, d.signal, "start the VM guard");
      // From here the guard's own messages go to the stderr file; the VM is the lifeline's, not ours.
      guard.stderr?.destroy();
      guard.unref();
      return life;
    } catch (e) {
      guard.kill("SIGKILL");
      await guard.exited;
      throw new KataError(Code.Internal, `start the VM guard: ${early.trim() || messageOf(e)}`, { cause: e });
    } finally {
      d.clear();
    }
  }

  /**
   * Takes over a running QEMU started elsewhere (a cached VM, with its lifeline in `config.child`):
   * connects to its console and QMP sockets in `config.vmDir`.
   */
  async adoptVm(config: AdoptedVmConfig, signal: AbortSignal): Promise<Vm> {
    const stderrFile = path.join(config.vmDir, qemuStderrFile);
    return this.#connect(
      {
        id: config.id,
        vmDir: config.vmDir,
        accel: this.accel(),
        machine: config.machineType,
        onConsoleLine: config.onConsoleLine,
      },
      config.child,
      () => fileTail(stderrFile, stderrTailBytes),
      signal,
    );
  }

  async #connect(
    config: {
      id: string;
      vmDir: string;
      accel: Accel;
      machine: string;
      onConsoleLine: ((line: string) => void) | undefined;
    },
    child: Child,
    stderrTail: () => string,
    signal: AbortSignal,
  ): Promise<Vm> {
    const paths = {
      qmp: path.join(config.vmDir, qemuSocketNames.qmp),
      agent: path.join(config.vmDir, qemuSocketNames.agent),
      consoleSocket: path.join(config.vmDir, qemuSocketNames.console),
      consoleLog: path.join(config.vmDir, "console.log"),
    };
    const accel = config.accel;
    const log = this.#deps.logger.child({ sandboxId: config.id, pid: child.pid });
    log.info("qemu started", { accel, machine: config.machine });
    const exitedEarly = new AbortController();
    void child.exited.then(() => {
      exitedEarly.abort(new KataError(Code.Unavailable, "qemu exited"));
    });
    const consoleLog = new CappedLog(paths.consoleLog, {
      maxBytes: this.#opts.consoleLogMaxBytes ?? defaultConsoleLogMaxBytes,
      onError: (e) => {
        log.warn("guest console log write failed; dropping console output", { err: describeError(e) });
      },
    });
    const control = deadline(this.#opts.controlTimeoutMs ?? defaultControlTimeoutMs, signal, exitedEarly.signal);
    let consoleSocket: Socket | undefined;
    let qmp: QmpClient;
    try {
      // The console first: QEMU drops console output while nobody is connected (see args/plan.ts).
      consoleSocket = await dialUnix(paths.consoleSocket, {
        signal: control.signal,
        op: "connect qemu console",
        retryWhile: notReadyErrnos,
      });
      relayConsole(
        consoleSocket,
        consoleLog,
        (e) => {
          log.debug("guest console connection failed", { err: messageOf(e) });
        },
        config.onConsoleLine,
      );
      qmp = await QmpClient.connect(paths.qmp, { signal: control.signal, logger: log });
    } catch (e) {
      // Read before the kill below, whose exit would abort exitedEarly too. A QEMU that fails at start
      // (a tap it cannot open) can reset the QMP connection a moment before its exit is seen: give it
      // that moment, so the error is QEMU's own message, not "connection closed".
      const diedByItself =
        exitedEarly.signal.aborted || (!signal.aborted && (await settlesWithin(child.exited, exitGraceMs)));
      consoleSocket?.destroy();
      child.kill("SIGKILL");
      const status = await child.exited;
      await consoleLog.close();
      await rm(config.vmDir, { recursive: true, force: true });
      if (diedByItself) {
        throw new KataError(Code.Internal, `qemu failed to start (${describeExit(status)}): ${stderrTail().trim()}`);
      }
      if (signal.aborted) throw abortError(signal, "start qemu");
      throw wrap(e, "start qemu");
    } finally {
      control.clear();
    }
    return new QemuVm({
      id: config.id,
      child,
      qmp,
      console: { socket: consoleSocket, log: consoleLog },
      agentSocketPath: paths.agent,
      vmDir: config.vmDir,
      stderr: stderrTail,
      log,
    });
  }
}
