// The status of a container and of each exec process, as one explicit transition table. Every change of
// status goes through `StatusCell.apply`; a verb that is not legal in the current status is refused with
// FAILED_PRECONDITION naming the status (youki's ContainerStatus::can_* predicates, as a table).

import { Code, KataError } from "../base/errors.js";

/** OCI runtime-spec states, plus "creating" while the create path runs. */
export type ContainerStatus = "creating" | "created" | "running" | "paused" | "stopped";

/** What happens to a process. "exit" is the guest's word (or the VM's loss); the rest are verbs. */
export type StatusEvent = "created" | "start" | "exit" | "pause" | "resume";

/** Questions a verb asks before it acts; no status changes. */
export type StatusCheck = "exec" | "update" | "delete" | "stats";

const transitions: Readonly<Record<StatusEvent, Readonly<Partial<Record<ContainerStatus, ContainerStatus>>>>> = {
  created: { creating: "created" },
  start: { created: "running" },
  // A created process "exits" when it is killed before it starts (OCI kill of a created container).
  exit: { created: "stopped", running: "stopped", paused: "stopped" },
  pause: { running: "paused" },
  resume: { paused: "running" },
};

const allowed: Readonly<Record<StatusCheck, readonly ContainerStatus[]>> = {
  exec: ["running"],
  update: ["created", "running", "paused"],
  delete: ["created", "stopped"],
  stats: ["created", "running", "paused", "stopped"],
};

/** Why the verb needs another status: the end of the error message. */
const hints: Readonly<Partial<Record<StatusEvent | StatusCheck, string>>> = {
  start: "only a created process can be started",
  pause: "only a running container can be paused",
  resume: "only a paused container can be resumed",
  exec: "exec needs a running container",
  delete: "kill it first, or delete with --force",
};

export type ProcessKind = "container" | "process";

/** The status of one container (its init process) or one exec process. */
export class StatusCell {
  readonly kind: ProcessKind;
  readonly id: string;
  #status: ContainerStatus;

  constructor(kind: ProcessKind, id: string, initial: ContainerStatus = "creating") {
    this.kind = kind;
    this.id = id;
    this.#status = initial;
  }

  get status(): ContainerStatus {
    return this.#status;
  }

  /** Whether `event` is legal now. */
  can(event: StatusEvent): boolean {
    return transitions[event][this.#status] !== undefined;
  }

  /** Throws FAILED_PRECONDITION naming the status unless `event` is legal now (checked before acting). */
  expect(event: StatusEvent): void {
    if (!this.can(event)) throw this.#refusal(event);
  }

  /** Applies `event`; FAILED_PRECONDITION naming the status when the table has no such transition. */
  apply(event: StatusEvent): ContainerStatus {
    const next = transitions[event][this.#status];
    if (next === undefined) throw this.#refusal(event);
    this.#status = next;
    return next;
  }

  /** Applies `event` when legal; returns whether it was. For events that race by nature (exit). */
  tryApply(event: StatusEvent): boolean {
    const next = transitions[event][this.#status];
    if (next === undefined) return false;
    this.#status = next;
    return true;
  }

  /** Throws FAILED_PRECONDITION unless `check` is allowed in the current status. */
  require(check: StatusCheck): void {
    if (!allowed[check].includes(this.#status)) throw this.#refusal(check);
  }

  #refusal(what: StatusEvent | StatusCheck): KataError {
    const hint = hints[what];
    return new KataError(
      Code.FailedPrecondition,
      `${this.kind} ${this.id} is ${this.#status}: cannot ${what === "created" ? "finish creating" : what} it${
        hint === undefined ? "" : ` (${hint})`
      }`,
      { details: { status: this.#status, verb: what } },
    );
  }
}

/** The transition table, for documentation and tests: event -> from -> to. */
export const statusTransitions = transitions;
