// The guest Agent's test world: a FakeCrun that behaves like the Crun wrapper, a storage driver that
// records attachments, and requests for the containers the tests run.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { constants } from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { nullLogger, type Logger } from "../../src/base/log.js";
import { Agent } from "../../src/guest/agent.js";
import type { CrunPort, TtyOptions } from "../../src/guest/crun.js";
import { StorageManager, type StorageHandler } from "../../src/guest/storage.js";
import { defaultSpec } from "../../src/oci/default-spec.js";
import type { Spec } from "../../src/oci/spec.js";
import type { Mounter } from "../../src/platform/mount.js";
import {
  CreateContainerRequestSchema,
  CreateSandboxRequestSchema,
  ExecProcessRequestSchema,
  StorageSchema,
  type CreateContainerRequest,
  type ExecProcessRequest,
  type Storage,
} from "../../src/protocol/gen/agent_pb.js";
import { guestRootfsPath, guestSharedDir } from "../../src/protocol/guest-paths.js";
import { ociToGrpcProcess, ociToGrpcSpec } from "../../src/protocol/oci-spec/convert.js";
import { FakeChild } from "./fakes.js";

const signalNames = new Map(
  // CAST: os.constants.signals is keyed by signal name.
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals] as const),
);

/** `fn`'s result, or its throw as a rejection (crun's failures are asynchronous). */
function attempt<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve) => {
    resolve(fn());
  });
}

interface FakeContainer {
  readonly bundleDir: string;
  readonly spec: Spec;
  readonly init: FakeChild;
  paused: boolean;
}

/** A FakeChild with a chosen pid: one no process has, so that kill(2) of it fails ESRCH. */
export class ChildWithPid extends FakeChild {
  override readonly pid: number;

  constructor(pid: number) {
    super();
    this.pid = pid;
  }
}

/** Above PID_MAX_LIMIT (2^22): kill(2) of it fails ESRCH on every Linux, and signals nothing real. */
export const vanishedPid = 2 ** 30;

/**
 * Behaves like the Crun wrapper for the calls the agent makes: `run` reads the bundle's config.json and
 * starts the container's init (a FakeChild the test ends), `kill` delivers the signal to it and succeeds
 * for a container that already ended, `delete` (--force) removes it, `pause`/`resume` need a
 * running/paused one. Other calls on unknown containers fail as with crun.
 */
export class FakeCrun implements CrunPort {
  readonly containers = new Map<string, FakeContainer>();
  readonly execs: { containerId: string; process: unknown; tty: boolean; child: FakeChild }[] = [];
  readonly runs: { containerId: string; tty: TtyOptions | undefined }[] = [];
  /** When true, `kill` succeeds but the process ignores the signal (stuck in D state, say). */
  ignoreKill = false;
  /** When set, `delete` fails with it. */
  deleteError: Error | undefined;
  /** When set, the next exec's process has this pid. */
  nextExecPid: number | undefined;

  #get(id: string): FakeContainer {
    const c = this.containers.get(id);
    if (c === undefined) throw new Error(`crun: container \`${id}\` does not exist`);
    return c;
  }

  async run(containerId: string, bundleDir: string, tty?: TtyOptions): Promise<FakeChild> {
    this.runs.push({ containerId, tty });
    if (this.containers.has(containerId)) throw new Error(`crun: container \`${containerId}\` already exists`);
    // CAST: the agent writes the spec it converted; a parse failure fails the test.
    const spec = JSON.parse(await readFile(path.join(bundleDir, "config.json"), "utf8")) as Spec;
    const init = new FakeChild();
    this.containers.set(containerId, { bundleDir, spec, init, paused: false });
    return init;
  }

  async exec(containerId: string, processJsonPath: string, ttyOptions?: TtyOptions): Promise<FakeChild> {
    const tty = ttyOptions !== undefined;
    const c = this.#get(containerId);
    if (c.init.hasExited) throw new Error(`crun: container \`${containerId}\` is not running`);
    const process: unknown = JSON.parse(await readFile(processJsonPath, "utf8"));
    const child = this.nextExecPid === undefined ? new FakeChild() : new ChildWithPid(this.nextExecPid);
    this.nextExecPid = undefined;
    this.execs.push({ containerId, process, tty, child });
    return child;
  }

  kill(containerId: string, signal: number, all: boolean): Promise<void> {
    return attempt(() => {
      const c = this.containers.get(containerId);
      if (c === undefined || c.init.hasExited || this.ignoreKill) return;
      const name = signalNames.get(signal) ?? "SIGKILL";
      c.init.kill(name);
      if (all) for (const e of this.execs.filter((x) => x.containerId === containerId)) e.child.kill(name);
    });
  }

  delete(containerId: string): Promise<void> {
    return attempt(() => {
      if (this.deleteError !== undefined) throw this.deleteError;
      this.containers.get(containerId)?.init.kill("SIGKILL");
      this.containers.delete(containerId);
    });
  }

  pause(containerId: string): Promise<void> {
    return attempt(() => {
      const c = this.#get(containerId);
      if (c.init.hasExited || c.paused) throw new Error(`crun: container \`${containerId}\` is not running`);
      c.paused = true;
    });
  }

  resume(containerId: string): Promise<void> {
    return attempt(() => {
      const c = this.#get(containerId);
      if (!c.paused) throw new Error(`crun: container \`${containerId}\` is not paused`);
      c.paused = false;
    });
  }

  update(containerId: string): Promise<void> {
    return attempt(() => {
      this.#get(containerId);
    });
  }

  ps(containerId: string): Promise<number[]> {
    return attempt(() => {
      const c = this.#get(containerId);
      return c.init.hasExited ? [] : [c.init.pid];
    });
  }

  /** The init of a container crun runs. */
  init(containerId: string): FakeChild {
    const c = this.containers.get(containerId);
    assert.ok(c !== undefined, `crun runs no container ${containerId}`);
    return c.init;
  }
}

/** Storage driver "fake": attaching records the mount point, detaching forgets it. */
export class FakeStorageHandler implements StorageHandler {
  readonly driver = "fake";
  readonly attached = new Set<string>();

  attach(s: Storage): Promise<() => Promise<void>> {
    if (this.attached.has(s.mountPoint)) return Promise.reject(new Error(`fake: ${s.mountPoint} attached twice`));
    this.attached.add(s.mountPoint);
    return Promise.resolve(() => {
      this.attached.delete(s.mountPoint);
      return Promise.resolve();
    });
  }
}

/** The fake handler never mounts: any mount is a test failure. */
export const noMounter: Mounter = {
  mount: () => Promise.reject(new Error("unexpected mount")),
  bind: () => Promise.reject(new Error("unexpected bind")),
  remountReadonly: () => Promise.reject(new Error("unexpected remount")),
  setPropagation: () => Promise.reject(new Error("unexpected propagation change")),
  unmount: () => Promise.reject(new Error("unexpected unmount")),
};

export const fakeStorage = (mountPoint: string, shared = false): Storage =>
  create(StorageSchema, { driver: "fake", source: "fake", fstype: "fake", mountPoint, shared });

/** Where the sandbox's share is mounted: the sandbox storage of these tests. */
export const sandboxMp = guestSharedDir;
export const mpOf = (id: string): string => `${guestSharedDir}/${id}/rootfs`;

export function containerRequest(
  id: string,
  opts: { rootPath?: string; storages?: Storage[] } = {},
): CreateContainerRequest {
  const spec = defaultSpec({ args: ["sleep", "inf"], rootPath: opts.rootPath ?? guestRootfsPath(id) });
  return create(CreateContainerRequestSchema, {
    containerId: id,
    OCI: ociToGrpcSpec(spec),
    storages: opts.storages ?? [fakeStorage(mpOf(id))],
  });
}

export const execRequest = (containerId: string, execId: string): ExecProcessRequest =>
  create(ExecProcessRequestSchema, {
    containerId,
    execId,
    process: ociToGrpcProcess({
      ...defaultSpec({ args: ["ps"], terminal: false }).process,
      cwd: "/",
      user: { uid: 0, gid: 0 },
    }),
  });

export interface AgentWorld {
  readonly agent: Agent;
  readonly crun: FakeCrun;
  readonly handler: FakeStorageHandler;
  readonly hostnames: string[];
}

/** An Agent over a FakeCrun and the fake storage driver, writing bundles under `bundlesDir`. */
export function agentWorld(
  bundlesDir: string,
  logger: Logger = nullLogger,
  catchesSignal?: (pid: number, signal: number) => Promise<boolean>,
): AgentWorld {
  const crun = new FakeCrun();
  const handler = new FakeStorageHandler();
  const hostnames: string[] = [];
  const agent = new Agent({
    crun,
    storage: new StorageManager({ mounter: noMounter, logger: nullLogger }, [handler]),
    logger,
    setHostname: (name) => {
      hostnames.push(name);
      return Promise.resolve();
    },
    bundlesDir,
    ...(catchesSignal === undefined ? {} : { catchesSignal }),
  });
  return { agent, crun, handler, hostnames };
}

/** Creates sandbox sb1 (hostname pod1) with the share as its storage. */
export async function withSandbox(agent: Agent): Promise<void> {
  await agent.createSandbox(
    create(CreateSandboxRequestSchema, { sandboxId: "sb1", hostname: "pod1", storages: [fakeStorage(sandboxMp)] }),
  );
}

/** Creates and starts container `id`; returns its init. */
export async function running(
  w: Pick<AgentWorld, "agent" | "crun">,
  id: string,
  opts: { storages?: Storage[] } = {},
): Promise<FakeChild> {
  await w.agent.createContainer(containerRequest(id, opts));
  await w.agent.startContainer(id);
  return w.crun.init(id);
}
