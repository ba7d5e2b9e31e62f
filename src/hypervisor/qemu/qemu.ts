// The QEMU driver: plans the command line (args/), starts QEMU, and holds its QMP connection.
// KVM when /dev/kvm is usable, TCG software emulation otherwise.

import { mkdir, open, rm, stat } from "node:fs/promises";
import path from "node:path";
import { abortError } from "../../base/async.js";
import { Code, KataError, errnoOf, wrap } from "../../base/errors.js";
import type { Logger } from "../../base/log.js";
import type { HostProbe } from "../../platform/probe.js";
import { describeExit, type Child, type ExitStatus, type ProcessRunner } from "../../platform/process.js";
import { sharedFsTag } from "../../protocol/guest-paths.js";
import type { Hypervisor, Vm, VmConfig } from "../hypervisor.js";
import { planQemuArgs } from "./args/plan.js";
import type { Accel } from "./args/switches.js";
import { fastKernelParams, tscEarlyKhz } from "./kernel-params.js";
import { QmpClient } from "./qmp/client.js";
import * as qmpCommand from "./qmp/commands.js";

export interface QemuDeps {
  readonly runner: ProcessRunner;
  readonly probe: HostProbe;
  readonly logger: Logger;
}

export interface QemuOptions {
  readonly binary: string;
  /** How long QEMU may take to open its QMP socket. */
  readonly controlTimeoutMs?: number;
  /** -bios for q35 (e.g. qboot); microvm uses its own. */
  readonly firmware?: string;
}

const stderrTailBytes = 8192;
const quitGraceMs = 3000;

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
      qmp: path.join(config.vmDir, "qmp.sock"),
      agent: path.join(config.vmDir, "agent.sock"),
      console: path.join(config.vmDir, "console.log"),
      pid: path.join(config.vmDir, "qemu.pid"),
    };
    const args = planQemuArgs({
      machineType: config.machineType,
      accel,
      cpuModel: accel === "kvm" ? "host" : "max",
      vcpus: config.vcpus,
      memoryMiB: config.memoryMiB,
      kernelPath: config.kernelPath,
      initrdPath: config.initrdPath,
      ...(config.readonlyDisks === undefined ? {} : { readonlyDisks: config.readonlyDisks }),
      kernelParams: [...fastKernelParams(config.machineType, accel, tsc), ...config.kernelParams].join(" "),
      consoleLogPath: paths.console,
      qmpSocketPath: paths.qmp,
      agentSocketPath: paths.agent,
      pidfilePath: paths.pid,
      ...(config.sharedDir === undefined ? {} : { sharedDir: { path: config.sharedDir, mountTag: sharedFsTag } }),
      ...(this.#opts.firmware === undefined || config.machineType !== "q35" ? {} : { firmware: this.#opts.firmware }),
    });
    await mkdir(config.vmDir, { recursive: true, mode: 0o700 });
    let child: Child;
    try {
      // setpriv --pdeathsig: QEMU dies with the process that holds it, even if that one is SIGKILLed;
      // nothing else could talk to the VM afterwards.
      const binary = config.binaryPath ?? this.#opts.binary;
      const guarded =
        this.#deps.probe.which("setpriv") === undefined
          ? [binary, ...args]
          : ["setpriv", "--pdeathsig", "KILL", "--", binary, ...args];
      const argv =
        config.netnsPath === undefined ? guarded : ["nsenter", `--net=${config.netnsPath}`, "--", ...guarded];
      const [file, ...rest] = argv;
      // CAST: argv always starts with the program.
      child = await this.#deps.runner.spawn(file as string, rest, { stdio: ["ignore", "ignore", "pipe"] });
    } catch (e) {
      await rm(config.vmDir, { recursive: true, force: true });
      throw e;
    }
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-stderrTailBytes);
    });
    const log = this.#deps.logger.child({ sandboxId: config.id, pid: child.pid });
    log.info("qemu started", { accel, machine: config.machineType });
    const exitedEarly = new AbortController();
    void child.exited.then(() => {
      exitedEarly.abort(new KataError(Code.Unavailable, "qemu exited"));
    });
    const timeout = AbortSignal.timeout(this.#opts.controlTimeoutMs ?? 10_000);
    let qmp: QmpClient;
    try {
      qmp = await QmpClient.connect(paths.qmp, {
        signal: AbortSignal.any([signal, timeout, exitedEarly.signal]),
        logger: log,
      });
    } catch (e) {
      child.kill("SIGKILL");
      const status = await child.exited;
      await rm(config.vmDir, { recursive: true, force: true });
      if (exitedEarly.signal.aborted) {
        throw new KataError(Code.Internal, `qemu failed to start (${describeExit(status)}): ${stderr.trim()}`);
      }
      if (signal.aborted) throw abortError(signal, "start qemu");
      throw wrap(e, "start qemu");
    }
    return new QemuVm(config.id, child, qmp, paths, config.vmDir, () => stderr, log);
  }
}

class QemuVm implements Vm {
  readonly id: string;
  readonly pid: number;
  readonly agentSocketPath: string;
  readonly consoleLogPath: string;
  readonly exited: Promise<ExitStatus>;
  readonly #child: Child;
  readonly #qmp: QmpClient;
  readonly #vmDir: string;
  readonly #stderr: () => string;
  readonly #log: Logger;
  #stopping: Promise<void> | undefined;

  constructor(
    id: string,
    child: Child,
    qmp: QmpClient,
    paths: { agent: string; console: string },
    vmDir: string,
    stderr: () => string,
    log: Logger,
  ) {
    this.id = id;
    this.pid = child.pid;
    this.#child = child;
    this.#qmp = qmp;
    this.agentSocketPath = paths.agent;
    this.consoleLogPath = paths.console;
    this.#vmDir = vmDir;
    this.#stderr = stderr;
    this.#log = log;
    this.exited = child.exited;
  }

  async consoleTail(lines: number): Promise<string> {
    const maxBytes = 64 * 1024;
    try {
      const fh = await open(this.consoleLogPath, "r");
      try {
        const size = (await fh.stat()).size;
        const start = Math.max(0, size - maxBytes);
        const buf = Buffer.alloc(size - start);
        await fh.read(buf, 0, buf.length, start);
        const text = buf.toString("utf8").replace(/\r/g, "");
        const tail = text
          .split("\n")
          .filter((l) => l.trim() !== "")
          .slice(-lines)
          .join("\n");
        const err = this.#stderr().trim();
        return err === "" ? tail : `${tail}\n[qemu stderr] ${err}`;
      } finally {
        await fh.close();
      }
    } catch (e) {
      if (errnoOf(e) === "ENOENT") return "(no console output)";
      throw e;
    }
  }

  async pause(signal?: AbortSignal): Promise<void> {
    await qmpCommand.stop(this.#qmp, signal);
  }

  async resume(signal?: AbortSignal): Promise<void> {
    await qmpCommand.cont(this.#qmp, signal);
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const gone = this.exited.then(() => true);
    const timer = (ms: number): Promise<boolean> =>
      new Promise((r) => {
        setTimeout(() => {
          r(false);
        }, ms).unref();
      });
    if (!(await Promise.race([gone, timer(0)]))) {
      await qmpCommand.quit(this.#qmp).catch((e: unknown) => {
        this.#log.debug("qmp quit failed; killing qemu", { err: String(e) });
      });
      if (!(await Promise.race([gone, timer(quitGraceMs)]))) {
        this.#child.kill("SIGKILL");
      }
    }
    const status = await this.exited;
    this.#qmp.close();
    this.#log.info("qemu stopped", { exit: describeExit(status) });
    await rm(this.#vmDir, { recursive: true, force: true });
  }
}
