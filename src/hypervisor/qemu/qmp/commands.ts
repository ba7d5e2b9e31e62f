// The QMP commands the driver uses, typed, over QmpClient.execute. Each takes the caller's signal; an
// aborted one rejects the call, but QEMU still runs a command it already received.

import { abortError, delay } from "../../../base/async.js";
import { Code, KataError, isKataError } from "../../../base/errors.js";
import { isRecord, type QmpClient } from "./client.js";

export interface QmpStatus {
  /** "running", "paused", "inmigrate", "postmigrate", "shutdown"... */
  readonly status: string;
  readonly running: boolean;
}

export interface QmpMigrationInfo {
  /** Absent until a migration starts (QEMU 7.2 answers `{}`), then "setup", "active", "completed", "failed"... */
  readonly status?: string;
  readonly [key: string]: unknown;
}

const migrationPollMs = 10;

/** Asks QEMU to exit. QEMU may close the socket before answering, which counts as success. */
export async function quit(qmp: QmpClient, signal?: AbortSignal): Promise<void> {
  // Read before sending: once "quit" is in flight, UNAVAILABLE means QEMU is exiting, not that we never asked.
  const wasOpen = !qmp.isClosed;
  try {
    await qmp.execute("quit", undefined, { signal });
  } catch (e) {
    if (!wasOpen || !isKataError(e, Code.Unavailable)) throw e;
  }
}

/** Pauses the vCPUs. */
export async function stop(qmp: QmpClient, signal?: AbortSignal): Promise<void> {
  await qmp.execute("stop", undefined, { signal });
}

/** Resumes the vCPUs. */
export async function cont(qmp: QmpClient, signal?: AbortSignal): Promise<void> {
  await qmp.execute("cont", undefined, { signal });
}

export async function queryStatus(qmp: QmpClient, signal?: AbortSignal): Promise<QmpStatus> {
  const r = await qmp.execute("query-status", undefined, { signal });
  if (!isRecord(r) || typeof r["status"] !== "string" || typeof r["running"] !== "boolean") {
    throw new KataError(Code.Internal, "qmp query-status: unexpected answer", {
      details: { answer: JSON.stringify(r) },
    });
  }
  return { status: r["status"], running: r["running"] };
}

/** Starts an outgoing migration. QEMU 7.2 has no `file:` URI: save with `exec:cat > FILE`. */
export async function migrate(qmp: QmpClient, uri: string, signal?: AbortSignal): Promise<void> {
  await qmp.execute("migrate", { uri }, { signal });
}

/** Starts an incoming migration on a VM started with `-incoming defer`, e.g. `exec:cat FILE`. */
export async function migrateIncoming(qmp: QmpClient, uri: string, signal?: AbortSignal): Promise<void> {
  await qmp.execute("migrate-incoming", { uri }, { signal });
}

/** `{ "x-ignore-shared": true }`: set on both sides, before migrate / migrate-incoming. */
export async function setMigrationCapabilities(
  qmp: QmpClient,
  caps: Readonly<Record<string, boolean>>,
  signal?: AbortSignal,
): Promise<void> {
  const capabilities = Object.entries(caps).map(([capability, state]) => ({ capability, state }));
  await qmp.execute("migrate-set-capabilities", { capabilities }, { signal });
}

/** Polls query-migrate until `completed` (returned) or `failed`/`cancelled` (INTERNAL with QEMU's error-desc). */
export async function waitMigration(qmp: QmpClient, signal: AbortSignal): Promise<QmpMigrationInfo> {
  for (;;) {
    const info = await qmp.execute("query-migrate", undefined, { signal });
    if (!isRecord(info)) throw new KataError(Code.Internal, "qmp query-migrate: unexpected answer");
    const status = info["status"];
    if (status === "completed") return { ...info, status };
    if (status === "failed" || status === "cancelled") {
      const desc = typeof info["error-desc"] === "string" ? `: ${info["error-desc"]}` : "";
      throw new KataError(Code.Internal, `qmp migrate: ${status}${desc}`);
    }
    // delay() rejects only when signal aborts; the error then names the wait, not the sleep.
    await delay(migrationPollMs, signal).catch((e: unknown) => {
      throw new KataError(abortError(signal, "qmp wait migration").code, "qmp wait migration", { cause: e });
    });
  }
}
