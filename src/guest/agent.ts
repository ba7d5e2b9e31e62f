// The agent's domain logic: the sandbox, its containers and their processes. RPC adapters (service.ts)
// call these methods; nothing here knows about ttRPC.

import { mkdir, rm, writeFile } from "node:fs/promises";
import { constants } from "node:os";
import path from "node:path";
import { deadline } from "../base/async.js";
import { Code, KataError, isKataError, wrap } from "../base/errors.js";
import { checkId } from "../base/ids.js";
import { KeyedLock } from "../base/lock.js";
import type { Logger } from "../base/log.js";
import { errField } from "../base/log.js";
import type { Spec } from "../oci/spec.js";
import type { CreateContainerRequest, CreateSandboxRequest, ExecProcessRequest } from "../protocol/gen/agent_pb.js";
import { create } from "@bufbuild/protobuf";
import { SpecSchema, type LinuxResources as GrpcLinuxResources } from "../protocol/gen/oci_pb.js";
import { guestBundlesDir, guestSharedDir } from "../protocol/guest-paths.js";
import { grpcToOciProcess, grpcToOciSpec } from "../protocol/oci-spec/convert.js";
import { readCgroupStats, type CgroupStatsInit } from "./cgroup-stats.js";
import type { CrunPort } from "./crun.js";
import { GuestProcess } from "./guest-process.js";
import type { OomEvents } from "./oom.js";
import type { StoragePort } from "./storage.js";
import { checkPsArgs, keepPsRows } from "../protocol/ps-args.js";

/** The sandbox's lock key; container ids cannot contain "/", so it never collides with one. */
const sandboxLockKey = "/sandbox";

export type ContainerState = "created" | "running" | "paused" | "stopped";

interface GuestContainer {
  readonly id: string;
  readonly bundleDir: string;
  state: ContainerState;
  init: GuestProcess | undefined;
  readonly execs: Map<string, GuestProcess>;
  readonly storagePoints: string[];
  /** The init process's terminal size when it runs on a terminal (process.terminal). */
  readonly tty: { rows: number; cols: number } | undefined;
}

export interface AgentDeps {
  readonly crun: CrunPort;
  readonly storage: StoragePort;
  readonly logger: Logger;
  readonly setHostname: (name: string) => Promise<void>;
  /**
   * Loads a kernel module with its parameters ([agent.kata] kernel_modules, sent in CreateSandbox);
   * NOT_FOUND when the guest image does not have it.
   */
  readonly loadKernelModule?: (name: string, parameters: readonly string[]) => Promise<void>;
  readonly bundlesDir?: string;
  /** The guest's cgroup v2 mount; containers live under kata-ts/<id>. */
  readonly cgroupRoot?: string;
  /** Out-of-memory kills per container, for GetOOMEvent; without it GetOOMEvent is UNIMPLEMENTED. */
  readonly oom?: OomEvents;
  /** Whether process `pid` has a handler for `signal` (its SigCgt); absent: assumed (fakes). */
  readonly catchesSignal?: (pid: number, signal: number) => Promise<boolean>;
}

export class Agent {
  readonly #deps: AgentDeps;
  readonly #lock = new KeyedLock();
  readonly #containers = new Map<string, GuestContainer>();
  #sandboxId: string | undefined;
  #sandboxStorages: string[] = [];

  constructor(deps: AgentDeps) {
    this.#deps = deps;
  }

  get sandboxId(): string | undefined {
    return this.#sandboxId;
  }

  async createSandbox(req: CreateSandboxRequest): Promise<void> {
    await this.#lock.with(sandboxLockKey, async () => {
      if (this.#sandboxId !== undefined) {
        throw new KataError(Code.AlreadyExists, `sandbox ${this.#sandboxId} already created`);
      }
      const id = checkId("sandbox id", req.sandboxId);
      if (req.hostname !== "") await this.#deps.setHostname(truncateHostname(req.hostname));
      for (const m of req.kernelModules) {
        if (!/^[A-Za-z0-9_-]+$/.test(m.name)) {
          throw new KataError(Code.InvalidArgument, `kernel module name ${JSON.stringify(m.name)} is not valid`);
        }
        const load = this.#deps.loadKernelModule;
        if (load === undefined) throw new KataError(Code.Unimplemented, `cannot load kernel module ${m.name} here`);
        await load(m.name, m.parameters);
      }
      this.#sandboxStorages = await this.#deps.storage.add(req.storages);
      this.#sandboxId = id;
      this.#deps.logger.info("sandbox created", { sandboxId: id, storages: this.#sandboxStorages.length });
    });
  }

  async destroySandbox(): Promise<void> {
    await this.#lock.with(sandboxLockKey, async () => {
      for (const id of [...this.#containers.keys()]) await this.removeContainer(id, 10);
      await this.#deps.storage.releaseAll();
      this.#sandboxStorages = [];
      this.#deps.logger.info("sandbox destroyed", { sandboxId: this.#sandboxId ?? "" });
      this.#sandboxId = undefined;
    });
  }

  async createContainer(req: CreateContainerRequest): Promise<void> {
    const id = checkId("container id", req.containerId);
    await this.#lock.with(id, async () => {
      if (this.#sandboxId === undefined) {
        throw new KataError(Code.FailedPrecondition, "sandbox not created: cannot create a container");
      }
      if (this.#containers.has(id)) throw new KataError(Code.AlreadyExists, `container ${id} already exists`);
      if (req.OCI === undefined) throw new KataError(Code.InvalidArgument, `container ${id}: no OCI spec`);
      const spec = grpcToOciSpec(req.OCI);
      checkRoot(id, spec);
      // The pty helper gives crun a terminal the container inherits; crun itself must not make one.
      const tty = spec.process?.terminal === true ? sizeOf(spec.process.consoleSize) : undefined;
      if (spec.process !== undefined) spec.process.terminal = false;
      const storagePoints = await this.#deps.storage.add(req.storages);
      const bundleDir = path.join(this.#deps.bundlesDir ?? guestBundlesDir, id);
      try {
        await mkdir(bundleDir, { recursive: true, mode: 0o700 });
        await writeFile(path.join(bundleDir, "config.json"), JSON.stringify(spec));
      } catch (e) {
        await this.#deps.storage.release(storagePoints);
        await rm(bundleDir, { recursive: true, force: true });
        throw wrap(e, `write bundle of ${id}`);
      }
      this.#containers.set(id, {
        id,
        bundleDir,
        state: "created",
        init: undefined,
        execs: new Map(),
        storagePoints,
        tty,
      });
      this.#deps.logger.info("container created", { containerId: id });
    });
  }

  async startContainer(containerId: string): Promise<void> {
    await this.#lock.with(containerId, async () => {
      const c = this.#container(containerId);
      if (c.state !== "created") {
        throw new KataError(Code.FailedPrecondition, `container ${containerId} is ${c.state}, not created`);
      }
      const resizeFile = path.join(c.bundleDir, "winsize");
      const started = Date.now();
      const child = await this.#deps.crun.run(
        c.id,
        c.bundleDir,
        c.tty === undefined ? undefined : { ...c.tty, resizeFile },
      );
      const init = new GuestProcess(c.id, child, c.tty === undefined ? undefined : resizeFile);
      c.init = init;
      c.state = "running";
      this.#deps.oom?.watch(c.id, path.join(this.#deps.cgroupRoot ?? "/sys/fs/cgroup", "kata-ts", c.id));
      void init.exitCode.then((code) => {
        c.state = "stopped";
        this.#deps.oom?.unwatch(c.id);
        this.#deps.logger.info("container exited", { containerId, exitCode: code });
      });
      // How long crun took to make the container: most of a pod container's start under TCG.
      this.#deps.logger.info("container started", { containerId, pid: init.pid, durationMs: Date.now() - started });
    });
  }

  /** The container's init when execId is empty or the container id, else the exec. */
  process(containerId: string, execId: string): GuestProcess {
    const c = this.#container(containerId);
    const p = execId === "" || execId === containerId ? c.init : c.execs.get(execId);
    if (p === undefined) {
      throw new KataError(
        Code.NotFound,
        execId === "" || execId === containerId
          ? `container ${containerId} has not been started`
          : `process ${execId} not found in container ${containerId}`,
      );
    }
    return p;
  }

  /** Starts another process in a running container (crun exec), held like the init process. */
  async execProcess(req: ExecProcessRequest): Promise<void> {
    const execId = checkId("exec id", req.execId);
    await this.#lock.with(req.containerId, async () => {
      const c = this.#container(req.containerId);
      if (c.state !== "running") {
        throw new KataError(Code.FailedPrecondition, `container ${c.id} is ${c.state}: cannot exec in it`);
      }
      if (execId === c.id || c.execs.has(execId)) {
        throw new KataError(Code.AlreadyExists, `process ${execId} already exists in container ${c.id}`);
      }
      if (req.process === undefined) throw new KataError(Code.InvalidArgument, `exec ${execId}: no process`);
      const proc = grpcToOciProcess(req.process);
      const tty = proc.terminal === true ? sizeOf(proc.consoleSize) : undefined;
      proc.terminal = false;
      const file = path.join(c.bundleDir, `exec-${execId}.json`);
      await writeFile(file, JSON.stringify(proc));
      const resizeFile = path.join(c.bundleDir, `winsize-${execId}`);
      const pidFile = path.join(c.bundleDir, `exec-${execId}.pid`);
      const child = await this.#deps.crun.exec(
        c.id,
        file,
        tty === undefined ? undefined : { ...tty, resizeFile },
        pidFile,
      );
      const p = new GuestProcess(execId, child, tty === undefined ? undefined : resizeFile, pidFile);
      c.execs.set(execId, p);
      void p.exitCode.then(() => Promise.all([rm(file, { force: true }), rm(pidFile, { force: true })]));
      this.#deps.logger.info("exec started", { containerId: c.id, execId, pid: p.pid });
    });
  }

  /** The next container that had a process killed for memory (GetOOMEvent: the host asks again and again). */
  nextOomEvent(signal?: AbortSignal): Promise<string> {
    const oom = this.#deps.oom;
    if (oom === undefined) return Promise.reject(new KataError(Code.Unimplemented, "OOM events are not watched here"));
    return oom.next(signal);
  }

  /** Guest pids of the container, as JSON, or a `ps` table of them ("table"; `args` go to ps, checked here). */
  async listProcesses(
    containerId: string,
    format: string,
    runPs: (args: readonly string[]) => Promise<string>,
    args: readonly string[] = [],
  ): Promise<Uint8Array> {
    const c = this.#container(containerId);
    const pids = c.state === "stopped" || c.state === "created" ? [] : await this.#deps.crun.ps(containerId);
    if (format === "json" || format === "") return Buffer.from(JSON.stringify(pids));
    if (format !== "table") throw new KataError(Code.InvalidArgument, `unknown ps format ${JSON.stringify(format)}`);
    checkPsArgs(args);
    return Buffer.from(keepPsRows(await runPs(args), pids));
  }

  /** Resizes a process's terminal (TtyWinResize): the pty helper re-reads the size on SIGUSR1. */
  async resizeTerminal(containerId: string, execId: string, rows: number, cols: number): Promise<void> {
    const p = this.process(containerId, execId);
    if (p.resizeFile === undefined) {
      throw new KataError(Code.FailedPrecondition, `process ${p.execId} of ${containerId} has no terminal`);
    }
    if (p.exited) return;
    await writeFile(p.resizeFile, `${rows} ${cols}\n`);
    // Until the helper catches SIGUSR1, the signal would kill it; it reads the file once it does.
    if (await (this.#deps.catchesSignal ?? (() => Promise.resolve(true)))(p.pid, constants.signals.SIGUSR1)) {
      p.signal(constants.signals.SIGUSR1);
    }
  }

  async pauseContainer(containerId: string): Promise<void> {
    await this.#lock.with(containerId, async () => {
      const c = this.#container(containerId);
      if (c.state !== "running")
        throw new KataError(Code.FailedPrecondition, `container ${containerId} is ${c.state}, not running`);
      await this.#deps.crun.pause(containerId);
      c.state = "paused";
    });
  }

  async resumeContainer(containerId: string): Promise<void> {
    await this.#lock.with(containerId, async () => {
      const c = this.#container(containerId);
      if (c.state !== "paused")
        throw new KataError(Code.FailedPrecondition, `container ${containerId} is ${c.state}, not paused`);
      await this.#deps.crun.resume(containerId);
      c.state = "running";
    });
  }

  async updateContainer(containerId: string, resources: GrpcLinuxResources | undefined): Promise<void> {
    await this.#lock.with(containerId, async () => {
      const c = this.#container(containerId);
      if (c.state !== "running" && c.state !== "paused") {
        throw new KataError(Code.FailedPrecondition, `container ${containerId} is ${c.state}: cannot update it`);
      }
      // The converter works on whole specs: wrap the resources in one.
      const oci = grpcToOciSpec(create(SpecSchema, resources === undefined ? {} : { Linux: { Resources: resources } }));
      const file = path.join(c.bundleDir, "update.json");
      await writeFile(file, JSON.stringify(oci.linux?.resources ?? {}));
      await this.#deps.crun.update(containerId, file);
    });
  }

  async statsContainer(containerId: string): Promise<CgroupStatsInit> {
    const c = this.#container(containerId);
    return readCgroupStats(path.join(this.#deps.cgroupRoot ?? "/sys/fs/cgroup", "kata-ts", c.id));
  }

  async signalProcess(containerId: string, execId: string, signal: number): Promise<void> {
    const c = this.#container(containerId);
    if (c.state === "created" && (execId === "" || execId === containerId)) {
      // Nothing runs yet: a kill of a created container just stops it (OCI kill semantics).
      if (signal === 9 || signal === 15) c.state = "stopped";
      return;
    }
    const p = this.process(containerId, execId);
    if (p.exited) return;
    if (execId === "" || execId === containerId) {
      // Crun.kill succeeds for a container that ended meanwhile.
      await this.#deps.crun.kill(containerId, signal, execId === "");
    } else {
      await p.signalInContainer(signal);
    }
  }

  async removeContainer(containerId: string, timeoutS: number): Promise<void> {
    await this.#lock.with(containerId, async () => {
      const c = this.#containers.get(containerId);
      if (c === undefined) return;
      const init = c.init;
      if (init !== undefined && !init.exited) {
        await this.#deps.crun.kill(containerId, 9, true).catch((e: unknown) => {
          this.#deps.logger.warn("kill before remove failed", { containerId, err: errField(e) });
        });
        await this.#awaitExit(containerId, init, timeoutS);
      }
      if (init !== undefined) {
        // `crun delete --force` of a container crun already removed succeeds; a failure may leave its
        // cgroup behind, which the sandbox outlives: worth a warning, not a failed RemoveContainer.
        await this.#deps.crun.delete(containerId).catch((e: unknown) => {
          this.#deps.logger.warn("crun delete failed", { containerId, err: errField(e) });
        });
      }
      await this.#deps.storage.release(c.storagePoints);
      await rm(c.bundleDir, { recursive: true, force: true });
      this.#containers.delete(containerId);
      this.#deps.logger.info("container removed", { containerId });
    });
  }

  /** Waits up to timeoutS (0: no limit) for the killed init to exit, then kills crun itself. */
  async #awaitExit(containerId: string, init: GuestProcess, timeoutS: number): Promise<void> {
    // setTimeout's longest delay (about 24.8 days) stands for "no limit".
    const d = deadline(timeoutS > 0 ? Math.min(timeoutS * 1000, maxTimerMs) : maxTimerMs);
    try {
      await init.wait(d.signal);
    } catch (e) {
      if (!isKataError(e, Code.DeadlineExceeded)) throw e;
      this.#deps.logger.warn("container outlived SIGKILL: killing crun", { containerId, timeoutS, err: errField(e) });
      init.killRuntime();
      await init.exitCode;
    } finally {
      d.clear();
    }
  }

  #container(containerId: string): GuestContainer {
    const c = this.#containers.get(containerId);
    if (c === undefined) throw new KataError(Code.NotFound, `container ${containerId} not found`);
    return c;
  }
}

/** The kernel keeps at most 64 bytes of hostname (__NEW_UTS_LEN); a longer one is cut there, as Kata does. */
export const maxHostnameBytes = 64;

/** `name` cut to maxHostnameBytes, never inside a UTF-8 sequence. */
export function truncateHostname(name: string): string {
  let out = "";
  for (const ch of name) {
    if (Buffer.byteLength(out + ch) > maxHostnameBytes) break;
    out += ch;
  }
  return out;
}

/** setTimeout's longest delay (2^31 - 1 ms); longer ones fire at once. */
const maxTimerMs = 2 ** 31 - 1;

/** The rootfs must be the container's directory on the sandbox share, and nothing else. */
function checkRoot(containerId: string, spec: Spec): void {
  const root = spec.root?.path ?? "";
  const want = `${guestSharedDir}/${containerId}/rootfs`;
  if (path.posix.normalize(root) !== want) {
    throw new KataError(
      Code.InvalidArgument,
      `container ${containerId}: root.path ${JSON.stringify(root)} must be ${want}`,
    );
  }
}

/** A terminal's size from the spec's consoleSize; 24x80 when unset or nonsense. */
function sizeOf(size: { height: number; width: number } | undefined): { rows: number; cols: number } {
  const ok = (n: number | undefined): n is number => n !== undefined && Number.isInteger(n) && n > 0 && n < 10_000;
  return { rows: ok(size?.height) ? size.height : 24, cols: ok(size?.width) ? size.width : 80 };
}
