// One container of a pod on the host: its bundle, its init process and its exec processes. Status lives
// in each process's StatusCell (the init's is the container's); this record only finds them.

import { Code, KataError } from "../base/errors.js";
import type { Bundle } from "../oci/bundle.js";
import type { LinuxResources } from "../oci/spec.js";
import type { Process as GrpcProcess } from "../protocol/gen/oci_pb.js";
import type { PersistedContainer } from "./persist.js";
import type { PodProcess } from "./pod-process.js";

export interface ExecEntry {
  readonly process: PodProcess;
  /** The process spec, converted (and so checked) when the exec was added. */
  readonly spec: GrpcProcess;
}

export class PodContainer {
  readonly id: string;
  readonly bundle: Bundle;
  readonly type: "sandbox" | "container";
  readonly createdAt: Date;
  readonly init: PodProcess;
  readonly execs = new Map<string, ExecEntry>();
  /** Processes of it the guest's out-of-memory killer killed. */
  oomKills = 0;
  /** Its CPU and memory limits as last set (the bundle's, then `update`'s): what the pod's VM is sized by. */
  resources: LinuxResources | undefined;

  constructor(init: {
    id: string;
    bundle: Bundle;
    type: "sandbox" | "container";
    process: PodProcess;
    /** When its create began (default: now). */
    createdAt?: Date;
  }) {
    this.id = init.id;
    this.bundle = init.bundle;
    this.type = init.type;
    this.createdAt = init.createdAt ?? new Date();
    this.init = init.process;
    this.resources = init.bundle.spec.linux?.resources;
  }

  /** The init for "" or the container's own id, else the exec; NOT_FOUND naming both ids. */
  process(execId: string): PodProcess {
    if (execId === "" || execId === this.id) return this.init;
    return this.exec(execId).process;
  }

  exec(execId: string): ExecEntry {
    const e = this.execs.get(execId);
    if (e === undefined) throw new KataError(Code.NotFound, `process ${execId} not found in container ${this.id}`);
    return e;
  }

  /** Every process that may still run: the init and the execs. */
  processes(): PodProcess[] {
    return [this.init, ...[...this.execs.values()].map((e) => e.process)];
  }

  /** What `state` and `list` show of a container whose create has not finished (runc's "creating"). */
  static creating(id: string, bundle: Bundle, type: "sandbox" | "container", createdAt: Date): PersistedContainer {
    return {
      id,
      bundle: bundle.dir,
      rootfs: bundle.rootfs,
      type,
      status: "creating",
      createdAt: createdAt.toISOString(),
      annotations: bundle.spec.annotations ?? {},
    };
  }

  persisted(): PersistedContainer {
    const exit = this.init.exit;
    return {
      id: this.id,
      bundle: this.bundle.dir,
      rootfs: this.bundle.rootfs,
      type: this.type,
      status: this.init.status,
      createdAt: this.createdAt.toISOString(),
      annotations: this.bundle.spec.annotations ?? {},
      ...(exit === undefined ? {} : { exitStatus: exit.exitStatus, exitedAt: exit.exitedAt.toISOString() }),
      ...(this.oomKills === 0 ? {} : { oomKills: this.oomKills }),
    };
  }
}
