// Hosts a sandbox's service in this process: the pod state machine and the containerd task API on the
// sandbox's socket. The service binary (shim-main) does this for `create`; `run` does it in-process,
// so other CLI commands (state, exec, kill) reach a running `run` the same way.

import { mkdir, rm } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { Code, KataError } from "../base/errors.js";
import { NetnsManager } from "../network/netns.js";
import { hostCgroupFs } from "../platform/cgroups.js";
import { TtrpcServer } from "../protocol/ttrpc/server.js";
import { StateStore } from "../sandbox/persist.js";
import { Pod, readHostProcMounts } from "../sandbox/pod.js";
import type { EventPublisher } from "../shim/events.js";
import { registerTaskService } from "../shim/task-service.js";
import type { RuntimeContext } from "./runtime-context.js";
import { podNetworkPort } from "./pod-network.js";
import { checkSandboxId } from "./service-launch.js";
import { resolveVmConfig } from "./vm-config.js";

/** How long a service that is ending waits for the calls still running to be answered. */
const endGraceMs = 10_000;

export interface HostedService {
  readonly pod: Pod;
  readonly socketPath: string;
  /** Resolves when the service should end (Shutdown, or a failed first create). */
  readonly ended: Promise<void>;
  /** Stops listening and removes the socket. */
  close(): Promise<void>;
}

export { checkSandboxId };

export interface HostServiceOptions {
  /** containerd's event service (the shim): task events go there. Absent for the OCI CLI: no events. */
  readonly publisher?: EventPublisher;
}

export async function hostService(
  ctx: RuntimeContext,
  sandboxId: string,
  opts: HostServiceOptions = {},
): Promise<HostedService> {
  checkSandboxId(ctx.flags.root, sandboxId);
  const store = new StateStore(ctx.flags.root);
  const socketPath = store.socketPath(sandboxId);
  await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  await removeStaleSocket(socketPath, sandboxId);
  const netns = new NetnsManager({ runner: ctx.runner });
  const sandboxDeps = ctx.sandboxDeps();
  const pod = new Pod(
    {
      ...sandboxDeps,
      runner: ctx.runner,
      netns,
      network: podNetworkPort(netns, ctx.logger),
      store,
      readProcMounts: readHostProcMounts,
      resolveVm: (spec, configPath) => resolveVmConfig(ctx, spec, configPath),
      cgroups: hostCgroupFs,
    },
    { sandboxId, runDir: ctx.flags.root, pid: process.pid, socketPath },
  );
  const server = new TtrpcServer({ logger: ctx.logger });
  const clients = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    clients.add(socket);
    socket.once("close", () => clients.delete(socket));
    void server.serve(socket);
  });
  let ended!: () => void;
  const endedP = new Promise<void>((r) => {
    ended = r;
  });
  // The pod can end from inside a call (a sandbox's Delete, Shutdown): that call, and any other still
  // running, is answered before the service is told to end (containerd fails a Delete whose shim goes
  // before answering). Bounded: a call stuck in a dead guest does not keep the service alive.
  const end = (): void => {
    const grace = new Promise<void>((r) => setTimeout(r, endGraceMs).unref());
    void Promise.race([server.idle(), grace]).then(ended);
  };
  registerTaskService(server, pod, {
    pid: process.pid,
    mounter: sandboxDeps.mounter,
    logger: ctx.logger,
    ...(opts.publisher === undefined ? {} : { publisher: opts.publisher }),
    onShutdown: () => {
      end();
    },
  });
  // The call that ended the pod (a Delete, a failed Create) still has its answer to send: end() waits.
  void pod.done.then(() => {
    end();
  });
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(socketPath, () => {
      resolve();
    });
  });
  return {
    pod,
    socketPath,
    ended: endedP,
    async close() {
      // Clients still connected are told the service is gone by their connection closing (the CLI
      // waits for that after a sandbox's delete): close them rather than wait for them.
      const closed = new Promise<void>((r) => {
        listener.close(() => {
          r();
        });
      });
      for (const c of clients) c.destroy();
      await closed;
      await rm(socketPath, { force: true });
    },
  };
}

/** A socket nobody listens on is left over from a dead service; a live one means the sandbox exists. */
async function removeStaleSocket(socketPath: string, sandboxId: string): Promise<void> {
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect(socketPath);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => {
      resolve(false);
    });
  });
  if (live) throw new KataError(Code.AlreadyExists, `sandbox ${sandboxId} already exists (its service is running)`);
  await rm(socketPath, { force: true });
}
