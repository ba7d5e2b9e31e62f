// The agent's domain logic: the sandbox, its containers and their processes. RPC adapters (service.ts)
// call these methods; nothing here knows about ttRPC.

import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { Code, KataError, wrap } from "../base/errors.js";
import { checkId } from "../base/ids.js";
import { KeyedLock } from "../base/lock.js";
import type { Logger } from "../base/log.js";
import { errField } from "../base/log.js";
import type { Spec } from "../oci/spec.js";
import type { CreateContainerRequest, CreateSandboxRequest } from "../protocol/gen/agent_pb.js";
import { guestBundlesDir, guestSharedDir } from "../protocol/guest-paths.js";
import { grpcToOciSpec } from "../protocol/oci-spec.js";
import type { Crun } from "./crun.js";
import { GuestProcess } from "./guest-process.js";
import type { StorageManager } from "./storage.js";

export type ContainerState = "created" | "running" | "stopped";

interface GuestContainer {
  readonly id: string;
  readonly bundleDir: string;
  state: ContainerState;
  init: GuestProcess | undefined;
  readonly execs: Map<string, GuestProcess>;
  readonly storagePoints: string[];
}

export interface AgentDeps {
  readonly crun: Crun;
  readonly storage: StorageManager;
  readonly logger: Logger;
  readonly setHostname: (name: string) => Promise<void>;
  readonly bundlesDir?: string;
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
    await this.#lock.with("sandbox", async () => {
      if (this.#sandboxId !== undefined) {
        throw new KataError(Code.AlreadyExists, `sandbox ${this.#sandboxId} already created`);
      }
      const id = checkId("sandbox id", req.sandboxId);
      if (req.hostname !== "") await this.#deps.setHostname(req.hostname);
      this.#sandboxStorages = await this.#deps.storage.add(req.storages);
      this.#sandboxId = id;
      this.#deps.logger.info("sandbox created", { sandboxId: id, storages: this.#sandboxStorages.length });
    });
  }

  async destroySandbox(): Promise<void> {
    await this.#lock.with("sandbox", async () => {
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
      this.#containers.set(id, { id, bundleDir, state: "created", init: undefined, execs: new Map(), storagePoints });
      this.#deps.logger.info("container created", { containerId: id });
    });
  }

  async startContainer(containerId: string): Promise<void> {
    await this.#lock.with(containerId, async () => {
      const c = this.#container(containerId);
      if (c.state !== "created") {
        throw new KataError(Code.FailedPrecondition, `container ${containerId} is ${c.state}, not created`);
      }
      const child = await this.#deps.crun.run(c.id, c.bundleDir);
      const init = new GuestProcess(c.id, child);
      c.init = init;
      c.state = "running";
      void init.exitCode.then((code) => {
        c.state = "stopped";
        this.#deps.logger.info("container exited", { containerId, exitCode: code });
      });
      this.#deps.logger.info("container started", { containerId, pid: init.pid });
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
      await this.#deps.crun.kill(containerId, signal, execId === "");
    } else {
      process.kill(p.pid, signal);
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
        const deadline = AbortSignal.timeout(timeoutS > 0 ? timeoutS * 1000 : 2 ** 31 - 1);
        await init.wait(deadline).catch(() => {
          init.killRuntime();
          return init.exitCode;
        });
      }
      if (init !== undefined) {
        await this.#deps.crun.delete(containerId).catch((e: unknown) => {
          this.#deps.logger.debug("crun delete", { containerId, err: errField(e) });
        });
      }
      await this.#deps.storage.release(c.storagePoints);
      await rm(c.bundleDir, { recursive: true, force: true });
      this.#containers.delete(containerId);
      this.#deps.logger.info("container removed", { containerId });
    });
  }

  #container(containerId: string): GuestContainer {
    const c = this.#containers.get(containerId);
    if (c === undefined) throw new KataError(Code.NotFound, `container ${containerId} not found`);
    return c;
  }
}

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
