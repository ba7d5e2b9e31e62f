// The task service's events, in the order containerd requires (runtime v2 README): TaskCreate after
// Create, TaskStart or TaskExecStarted after Start, TaskExit when a started process exits and always
// before the answer to its Delete and before TaskDelete. Without a publisher (the OCI CLI's service)
// every method does nothing.

import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { errField, nullLogger, type Logger } from "../base/log.js";
import type { ExitInfo } from "../sandbox/pod-process.js";
import {
  TaskCreateSchema,
  TaskDeleteSchema,
  TaskExecAddedSchema,
  TaskExecStartedSchema,
  TaskExitSchema,
  TaskOOMSchema,
  TaskPausedSchema,
  TaskResumedSchema,
  TaskStartSchema,
} from "../protocol/gen/containerd/api/events/task_pb.js";
import { topics, type EventPublisher } from "./events.js";
import type { ContainerdMount } from "./rootfs.js";

export interface CreatedTask {
  readonly id: string;
  readonly bundle: string;
  readonly rootfs: readonly ContainerdMount[];
  readonly stdin: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminal: boolean;
}

/** An exec id as the pod keys it: "" (or the container's own id) is the init. */
const procKey = (id: string, execId: string): string => `${id}\u0000${execId === id ? "" : execId}`;

export class TaskEvents {
  readonly #pub: EventPublisher | undefined;
  readonly #pid: number;
  readonly #log: Logger;
  /** Started processes → their TaskExit, published once they exit. */
  readonly #exits = new Map<string, Promise<void>>();

  constructor(publisher: EventPublisher | undefined, pid: number, logger: Logger = nullLogger) {
    this.#pub = publisher;
    this.#pid = pid;
    this.#log = logger;
  }

  created(t: CreatedTask): void {
    this.#pub?.publish(topics.create, TaskCreateSchema, {
      containerId: t.id,
      bundle: t.bundle,
      rootfs: t.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target, options: [...m.options] })),
      io: { stdin: t.stdin, stdout: t.stdout, stderr: t.stderr, terminal: t.terminal },
      pid: this.#pid,
    });
  }

  /** After a Start: TaskStart (init) or TaskExecStarted, then TaskExit once `exited` resolves. */
  started(id: string, execId: string, exited: Promise<ExitInfo>): void {
    const pub = this.#pub;
    if (pub === undefined) return;
    const init = execId === "" || execId === id;
    if (init) pub.publish(topics.start, TaskStartSchema, { containerId: id, pid: this.#pid });
    else pub.publish(topics.execStarted, TaskExecStartedSchema, { containerId: id, execId, pid: this.#pid });
    const published = exited.then(
      (exit) => {
        pub.publish(topics.exit, TaskExitSchema, {
          containerId: id,
          id: init ? id : execId,
          pid: this.#pid,
          exitStatus: exit.exitStatus,
          exitedAt: timestampFromDate(exit.exitedAt),
        });
      },
      (e: unknown) => {
        this.#log.error("wait for a process's exit failed: no TaskExit for it", {
          containerId: id,
          execId,
          err: errField(e),
        });
      },
    );
    this.#exits.set(procKey(id, execId), published);
  }

  execAdded(id: string, execId: string): void {
    this.#pub?.publish(topics.execAdded, TaskExecAddedSchema, { containerId: id, execId });
  }

  paused(id: string): void {
    this.#pub?.publish(topics.paused, TaskPausedSchema, { containerId: id });
  }

  resumed(id: string): void {
    this.#pub?.publish(topics.resumed, TaskResumedSchema, { containerId: id });
  }

  oom(id: string): void {
    this.#pub?.publish(topics.oom, TaskOOMSchema, { containerId: id });
  }

  /**
   * After the pod deleted a process, before Delete answers: waits until its TaskExit is queued (a deleted
   * process has exited), then queues TaskDelete for an init.
   */
  async deleted(id: string, execId: string, exit: ExitInfo | undefined): Promise<void> {
    const key = procKey(id, execId);
    const exitPublished = this.#exits.get(key);
    this.#exits.delete(key);
    await exitPublished;
    if (execId !== "" && execId !== id) return;
    this.#pub?.publish(topics.delete, TaskDeleteSchema, {
      containerId: id,
      id,
      pid: this.#pid,
      exitStatus: exit?.exitStatus ?? 0,
      ...(exit === undefined ? {} : { exitedAt: timestampFromDate(exit.exitedAt) }),
    });
  }
}
