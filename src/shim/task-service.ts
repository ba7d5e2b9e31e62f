// The containerd task API (containerd.task.v2.Task) over ttRPC, backed by the pod's state machine.
// containerd calls it through the shim; the OCI CLI calls it too: one state machine, two front doors.
// Handlers only translate messages; the wire mapping of errors is the ttRPC server's.

import { toJson } from "@bufbuild/protobuf";
import { StatsContainerResponseSchema } from "../protocol/gen/agent_pb.js";
import { anyIs, anyUnpack, timestampFromDate, type Any } from "@bufbuild/protobuf/wkt";
import { Code, KataError } from "../base/errors.js";
import { parseLinuxResources, parseProcess } from "../oci/parse-spec.js";
import type { ContainerStatus } from "../sandbox/persist.js";
import type { Pod } from "../sandbox/pod.js";
import type { ExitInfo } from "../sandbox/pod-process.js";
import {
  Task,
  type CreateTaskRequest,
  type DeleteRequest,
} from "../protocol/gen/containerd/runtime/v2/task/shim_pb.js";
import { Status } from "../protocol/gen/containerd/api/types/task/task_pb.js";
import type { CallContext, TtrpcServer } from "../protocol/ttrpc/server.js";
import { CleanupStack } from "../base/cleanup.js";
import { errField, nullLogger, type Logger } from "../base/log.js";
import type { Mounter } from "../platform/mount.js";
import type { EventPublisher } from "./events.js";
import { mountRootfs, type MountedRootfs } from "./rootfs.js";
import { TaskEvents } from "./task-events.js";
import { metricsAny } from "./metrics.js";
import { OptionsSchema } from "../protocol/gen/containerd/pkg/runtimeoptions/v1/api_pb.js";
import { anyTypes, forceDeleteKey, formatKey, fromJsonAny, jsonAny } from "./json-any.js";

export { anyTypes, forceDeleteKey, formatKey, fromJsonAny, jsonAny } from "./json-any.js";

function wantsOwnFormat(metadata: ReadonlyMap<string, string[]>): boolean {
  return metadata.get(formatKey)?.includes("kata-ts") === true;
}

/**
 * The configuration file a Create's options name (containerd's runtimeoptions.v1.Options, from a CRI
 * runtime handler's `options.ConfigPath` or `ctr run --runtime-config-path`). Other option types (the
 * runc options CRI's default handler sends) are ignored, as Kata does.
 */
export function configPathOf(options: Any | undefined): string | undefined {
  if (options === undefined || !anyIs(options, OptionsSchema)) return undefined;
  const path = anyUnpack(options, OptionsSchema)?.configPath ?? "";
  return path === "" ? undefined : path;
}

const statusOf: Record<ContainerStatus, Status> = {
  creating: Status.UNKNOWN,
  created: Status.CREATED,
  running: Status.RUNNING,
  paused: Status.PAUSED,
  stopped: Status.STOPPED,
};

function exitFields(exit: ExitInfo | undefined): {
  exitStatus: number;
  exitedAt?: ReturnType<typeof timestampFromDate>;
} {
  return exit === undefined
    ? { exitStatus: 0 }
    : { exitStatus: exit.exitStatus, exitedAt: timestampFromDate(exit.exitedAt) };
}

export interface TaskServiceHooks {
  /** After Shutdown (or when the pod is gone): the process may exit. */
  readonly onShutdown: () => void;
  readonly pid: number;
  /** Where task events go (containerd's shim); absent for the OCI CLI's service: no events. */
  readonly publisher?: EventPublisher;
  /** Mounts containerd's rootfs mounts on the bundle; without it, Create refuses them. */
  readonly mounter?: Mounter;
  readonly logger?: Logger;
}

export function registerTaskService(server: TtrpcServer, pod: Pod, hooks: TaskServiceHooks): void {
  const log = hooks.logger ?? nullLogger;
  const events = new TaskEvents(hooks.publisher, hooks.pid, log);
  pod.onOom((containerId) => {
    events.oom(containerId);
  });
  /** Containers whose rootfs this service mounted from containerd's mounts. */
  const rootfsOf = new Map<string, MountedRootfs>();
  /**
   * Unmounts the rootfs of every container the pod no longer has (a delete, the sandbox's delete taking
   * the others with it, a shutdown, a lost VM). The containers are gone already: a failure is logged.
   * Calls are chained, so a Delete answers only after an unmount started by the pod's end is done too.
   */
  const releaseGone = async (): Promise<void> => {
    const live = new Set(pod.containerIds());
    for (const [id, rootfs] of rootfsOf) {
      if (live.has(id)) continue;
      rootfsOf.delete(id);
      await rootfs.unmount().catch((e: unknown) => {
        log.error("unmount a deleted container's rootfs", { containerId: id, target: rootfs.target, err: errField(e) });
      });
    }
  };
  let releasing = Promise.resolve();
  const releaseRootfs = (): Promise<void> => {
    releasing = releasing.then(releaseGone);
    return releasing;
  };
  void pod.done.then(releaseRootfs);
  const create = async (req: CreateTaskRequest, ctx: CallContext): Promise<{ pid: number }> => {
    const cleanup = new CleanupStack();
    let rootfs: MountedRootfs | undefined;
    if (req.rootfs.length > 0) {
      if (hooks.mounter === undefined) {
        throw new KataError(Code.Unimplemented, `create ${req.id}: rootfs: mounts are not supported by this service`);
      }
      rootfs = await mountRootfs({ mounter: hooks.mounter, logger: log }, req.bundle, req.rootfs, ctx.signal);
      const mounted = rootfs;
      if (mounted !== undefined) cleanup.defer(`unmount the rootfs of ${req.id}`, () => mounted.unmount());
    }
    const configPath = configPathOf(req.options);
    let pid: number;
    try {
      pid = await pod.create(
        {
          id: req.id,
          bundle: req.bundle,
          stdio: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
          ...(configPath === undefined ? {} : { configPath }),
        },
        ctx.signal,
      );
    } catch (e) {
      return cleanup.unwind(e);
    }
    if (rootfs !== undefined) rootfsOf.set(req.id, rootfs);
    events.created(req);
    return { pid };
  };
  const del = async (req: DeleteRequest, ctx: CallContext): Promise<{ pid: number; exitStatus: number }> => {
    const force = ctx.metadata.get(forceDeleteKey)?.includes("true") === true;
    const { exit } = await pod.delete(req.id, req.execId, ctx.signal, { force });
    await events.deleted(req.id, req.execId, exit);
    await releaseRootfs();
    return { pid: hooks.pid, ...exitFields(exit) };
  };
  server.register(Task, {
    create: (req, ctx) => create(req, ctx),
    start: async (req, ctx) => {
      const pid = await pod.start(req.id, req.execId, ctx.signal);
      events.started(req.id, req.execId, pod.wait(req.id, req.execId));
      return { pid };
    },
    state: (req) => {
      const s = pod.state(req.id, req.execId);
      return Promise.resolve({
        id: s.id,
        bundle: s.bundle,
        pid: s.pid,
        status: statusOf[s.status],
        stdin: s.stdio.stdin,
        stdout: s.stdio.stdout,
        stderr: s.stdio.stderr,
        terminal: s.stdio.terminal,
        execId: req.execId,
        ...exitFields(s.exit),
      });
    },
    kill: async (req, ctx) => {
      await pod.kill(req.id, req.execId, req.signal, req.all, ctx.signal);
      return {};
    },
    wait: async (req) => exitFields(await pod.wait(req.id, req.execId)),
    delete: (req, ctx) => del(req, ctx),
    exec: async (req) => {
      // The same rules as config.json's process, so a bad exec is refused here, naming the field.
      const what = `exec ${req.execId}: spec`;
      const process = parseProcess(fromJsonAny(req.spec, anyTypes.process, what), what);
      await pod.exec(req.id, req.execId, process, {
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
        terminal: req.terminal,
      });
      events.execAdded(req.id, req.execId);
      return {};
    },
    resizePty: async (req, ctx) => {
      await pod.resizePty(req.id, req.execId, req.width, req.height, ctx.signal);
      return {};
    },
    closeIO: (req) => {
      if (req.stdin) pod.closeIO(req.id, req.execId);
      return Promise.resolve({});
    },
    pause: async (req, ctx) => {
      await pod.pause(req.id, ctx.signal);
      events.paused(req.id);
      return {};
    },
    resume: async (req, ctx) => {
      await pod.resume(req.id, ctx.signal);
      events.resumed(req.id);
      return {};
    },
    update: async (req, ctx) => {
      const what = `update ${req.id}: resources`;
      const resources = parseLinuxResources(fromJsonAny(req.resources, anyTypes.resources, what), what);
      await pod.update(req.id, resources, ctx.signal);
      return {};
    },
    stats: async (req, ctx) => {
      const st = await pod.stats(req.id, ctx.signal);
      if (wantsOwnFormat(ctx.metadata))
        return { stats: jsonAny(anyTypes.stats, toJson(StatsContainerResponseSchema, st)) };
      return { stats: metricsAny(st) };
    },
    pids: async (req, ctx) => {
      const { header, rows } = await pod.ps(req.id, req.psArgs, ctx.signal);
      // containerd's clients decode each info with their type registry (`ctr task ps` fails on an unknown
      // type): they get the guest's pids alone, as from Kata.
      if (!wantsOwnFormat(ctx.metadata)) return { processes: rows.map((row) => ({ pid: row.pid })) };
      return {
        processes: rows.map((row) => ({ pid: row.pid, info: jsonAny(anyTypes.psRow, { header, fields: row.fields }) })),
      };
    },
    connect: () => Promise.resolve({ shimPid: hooks.pid, taskPid: hooks.pid, version: "kata-ts" }),
    shutdown: async (req) => {
      if (req.now || pod.containerIds().length === 0) {
        await pod.shutdown();
        await releaseRootfs();
        hooks.onShutdown();
      }
      return {};
    },
  });
}
