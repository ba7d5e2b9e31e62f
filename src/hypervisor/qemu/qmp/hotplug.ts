// QMP commands for CPU and memory hotplug (q35): which vCPU slots are free, device_add and object-add,
// and the guest's ACPI _OST answers. Replies are checked field by field: a malformed one is INTERNAL,
// naming the command. The choice of slots (freeCpuSlots) is pure, for tests.

import { Code, KataError } from "../../../base/errors.js";
import { isRecord, type QmpClient } from "./client.js";

/** One vCPU slot of query-hotpluggable-cpus: the device type and the ids device_add needs. */
export interface CpuSlot {
  /** The CPU device's driver, e.g. "max-x86_64-cpu". */
  readonly type: string;
  /** socket-id, die-id, core-id, thread-id, node-id as QEMU lists them (numbers only). */
  readonly props: Readonly<Record<string, number>>;
  /** Set when a vCPU occupies the slot. */
  readonly qomPath?: string;
}

/** More slots than any -smp maxcpus kata-ts gives (default_maxvcpus is capped by the host's CPUs). */
const maxSlots = 4096;

function bad(command: string, what: string): KataError {
  return new KataError(Code.Internal, `qmp ${command}: unexpected answer (${what})`);
}

/** Parses query-hotpluggable-cpus' answer. */
export function parseHotpluggableCpus(answer: unknown): CpuSlot[] {
  const cmd = "query-hotpluggable-cpus";
  if (!Array.isArray(answer)) throw bad(cmd, "not a list");
  if (answer.length > maxSlots) throw bad(cmd, `more than ${maxSlots} slots`);
  return answer.map((e: unknown, i) => {
    if (!isRecord(e) || typeof e["type"] !== "string" || !isRecord(e["props"])) throw bad(cmd, `slot ${i}`);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(e["type"])) throw bad(cmd, `slot ${i}: type`);
    const props: Record<string, number> = {};
    for (const [k, v] of Object.entries(e["props"])) {
      if (!/^[a-z]{1,16}-id$/.test(k) || typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 65535) {
        throw bad(cmd, `slot ${i}: prop ${k.slice(0, 20)}`);
      }
      props[k] = v;
    }
    const qom = e["qom-path"];
    if (qom !== undefined && typeof qom !== "string") throw bad(cmd, `slot ${i}: qom-path`);
    return { type: e["type"], props, ...(qom === undefined ? {} : { qomPath: qom }) };
  });
}

/** A stable order: socket, die, core, thread. */
function slotKey(s: CpuSlot): number[] {
  return ["node-id", "socket-id", "die-id", "core-id", "thread-id"].map((k) => s.props[k] ?? 0);
}

/** The first `count` free slots in topology order; fewer when there are not that many. */
export function freeCpuSlots(slots: readonly CpuSlot[], count: number): CpuSlot[] {
  const free = slots.filter((s) => s.qomPath === undefined);
  free.sort((a, b) => {
    const ka = slotKey(a);
    const kb = slotKey(b);
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return (ka[i] ?? 0) - (kb[i] ?? 0);
    return 0;
  });
  return free.slice(0, Math.max(0, count));
}

/** The device id kata-ts gives the vCPU in `slot`: unique per slot, so a retry cannot plug it twice. */
export function cpuDeviceId(slot: CpuSlot): string {
  return `cpu-${slotKey(slot).join("-")}`;
}

export async function queryHotpluggableCpus(qmp: QmpClient, signal?: AbortSignal): Promise<CpuSlot[]> {
  return parseHotpluggableCpus(await qmp.execute("query-hotpluggable-cpus", undefined, { signal }));
}

/** device_add with `driver`, `id` and the device's properties. */
export async function deviceAdd(
  qmp: QmpClient,
  args: { driver: string; id: string } & Record<string, string | number | boolean>,
  signal?: AbortSignal,
): Promise<void> {
  await qmp.execute("device_add", args, { signal });
}

/** object-add of a RAM backend of `sizeBytes` (QEMU >= 6: the properties flat beside qom-type). */
export async function objectAddMemoryRam(
  qmp: QmpClient,
  id: string,
  sizeBytes: number,
  signal?: AbortSignal,
): Promise<void> {
  await qmp.execute("object-add", { "qom-type": "memory-backend-ram", id, size: sizeBytes }, { signal });
}

export async function objectDel(qmp: QmpClient, id: string, signal?: AbortSignal): Promise<void> {
  await qmp.execute("object-del", { id }, { signal });
}

/** One device's last ACPI _OST as the guest reported it (QEMU's ACPIOSTInfo). */
export interface OspmStatus {
  readonly device?: string;
  readonly slotType: string;
  /** The event the guest handled: 1 is an insertion (ACPI_NOTIFY_DEVICE_CHECK); 0 before any. */
  readonly source: number;
  /** 0: success; anything else a failure code. */
  readonly status: number;
}

export function parseOspmStatus(answer: unknown): OspmStatus[] {
  const cmd = "query-acpi-ospm-status";
  if (!Array.isArray(answer) || answer.length > maxSlots * 2) throw bad(cmd, "not a list");
  return answer.map((e: unknown, i) => {
    if (!isRecord(e)) throw bad(cmd, `entry ${i}`);
    const { device, source, status } = e;
    const slotType = e["slot-type"];
    if (typeof slotType !== "string" || typeof source !== "number" || typeof status !== "number") {
      throw bad(cmd, `entry ${i}`);
    }
    if (device !== undefined && typeof device !== "string") throw bad(cmd, `entry ${i}: device`);
    return { slotType, source, status, ...(device === undefined ? {} : { device }) };
  });
}

export async function queryAcpiOspmStatus(qmp: QmpClient, signal?: AbortSignal): Promise<OspmStatus[]> {
  return parseOspmStatus(await qmp.execute("query-acpi-ospm-status", undefined, { signal }));
}
