// `state` and `list`, answered as runc answers them: from the state directory (the service saves every
// change of status there), plus one connect to the sandbox service's socket to tell whether it still
// holds the sandbox. Nothing here loads protobuf, ttRPC or the VM code: these verbs are called often
// (podman polls `state`), and their cost is mostly the modules a command loads.

import { stat } from "node:fs/promises";
import type { Command } from "commander";
import { Code, KataError, ignoreErrno } from "../../base/errors.js";
import { checkId } from "../../base/ids.js";
import { ociVersion, type State } from "../../oci/spec.js";
import { StateStore, type PersistedContainer, type PersistedSandbox } from "../../sandbox/persist.js";
import { serviceListening } from "../service-launch.js";
import { standInPid } from "../stand-in-record.js";

/** The fields `runc state` prints, in its order (annotations only when there are some). */
export interface RuncState extends State {
  pid: number;
  rootfs: string;
  /** RFC 3339, UTC. */
  created: string;
  /** The owner of a rootless container; "" otherwise (kata-ts runs as root). */
  owner: string;
}

/**
 * The pid of a container as the host sees it: the host process that stands for its process when one was
 * noted (`holderPid`), else the sandbox's service, which holds them all. 0 once stopped, as runc prints.
 */
export function hostPidOf(saved: PersistedSandbox, status: State["status"], holderPid?: number): number {
  if (status === "stopped") return 0;
  return holderPid ?? saved.servicePid;
}

/**
 * Pure: a container's OCI state from its sandbox's saved state, whether the service still runs, and the
 * host process noted for the container's process (if any).
 */
export function stateOf(
  saved: PersistedSandbox,
  c: PersistedContainer,
  serviceUp: boolean,
  holderPid?: number,
): RuncState {
  // A service that is gone took the VM and every process in it along.
  const status: State["status"] = serviceUp ? c.status : "stopped";
  return {
    ociVersion,
    id: c.id,
    pid: hostPidOf(saved, status, holderPid),
    status,
    bundle: c.bundle,
    // States saved by older builds lack it: runc's rule (root.path under the bundle) is the usual case.
    rootfs: c.rootfs ?? `${c.bundle}/rootfs`,
    created: c.createdAt,
    owner: "",
    ...(Object.keys(c.annotations).length === 0 ? {} : { annotations: { ...c.annotations } }),
  };
}

/** The sandbox holding `id`, and its saved entry when there is one; NOT_FOUND without a mapping. */
async function findContainer(
  store: StateStore,
  id: string,
): Promise<{ sandboxId: string; entry?: { saved: PersistedSandbox; c: PersistedContainer } }> {
  checkId("container id", id);
  const sandboxId = await store.sandboxOf(id);
  if (sandboxId === undefined) throw new KataError(Code.NotFound, `container ${id} does not exist`);
  const saved = await store.load(sandboxId);
  const c = saved?.containers.find((x) => x.id === id);
  return saved === undefined || c === undefined ? { sandboxId } : { sandboxId, entry: { saved, c } };
}

/** The OCI state of a container, as `state` prints it. */
export async function containerState(root: string, id: string): Promise<RuncState> {
  const store = new StateStore(root);
  const found = await findContainer(store, id);
  if (found.entry === undefined) {
    // Mapped but not saved: its create runs (a VM boots), or it died with the service that ran it.
    if (await serviceListening(store.socketPath(found.sandboxId))) {
      throw new KataError(Code.Unavailable, `container ${id} is being created: it has no state yet`);
    }
    throw new KataError(
      Code.NotFound,
      `container ${id}: its create did not finish; \`kata-ts delete --force ${id}\` removes what is left of it`,
    );
  }
  const { saved, c } = found.entry;
  const holder = await standInPid(store.sandboxDir(found.sandboxId), id);
  return stateOf(saved, c, await serviceListening(store.socketPath(found.sandboxId)), holder);
}

export interface ListRow extends RuncState {
  /** kata-ts's own column: the sandbox (VM) that holds the container. */
  sandbox: string;
}

/** runc's table: ID PID STATUS BUNDLE CREATED OWNER, then kata-ts's SANDBOX; columns padded as tabwriter does. */
export function listTable(rows: readonly ListRow[]): string {
  const header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER", "SANDBOX"];
  const table = [header, ...rows.map((r) => [r.id, String(r.pid), r.status, r.bundle, r.created, r.owner, r.sandbox])];
  const widths = header.map((_h, i) => Math.max(...table.map((row) => (row[i] ?? "").length)));
  return (
    table
      .map((row) =>
        row
          .map((c, i) => c.padEnd(widths[i] ?? 0))
          .join("   ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

/** The owner runc's list prints: the name of the user owning the state directory. */
async function ownerOf(dir: string): Promise<string> {
  const st = await stat(dir).catch(ignoreErrno("ENOENT"));
  if (st === undefined) return "";
  return st.uid === 0 ? "root" : `#${st.uid}`;
}

export async function listContainers(root: string, warn: (msg: string, sandboxId: string) => void): Promise<ListRow[]> {
  const store = new StateStore(root);
  const rows: ListRow[] = [];
  for (const sid of await store.sandboxIds()) {
    const saved = await store.load(sid).catch((e: unknown) => {
      // One unreadable state file must not hide the other sandboxes.
      warn(e instanceof Error ? e.message : String(e), sid);
      return undefined;
    });
    if (saved === undefined) continue;
    const up = await serviceListening(store.socketPath(sid));
    const owner = await ownerOf(store.sandboxDir(sid));
    for (const c of saved.containers) {
      const holder = await standInPid(store.sandboxDir(sid), c.id);
      rows.push({ ...stateOf(saved, c, up, holder), owner, sandbox: sid });
    }
  }
  return rows;
}

export function registerState(program: Command, root: () => string): void {
  program
    .command("state")
    .description("print the OCI state of a container as JSON")
    .argument("<container-id>")
    .action(async (id: string) => {
      process.stdout.write(JSON.stringify(await containerState(root(), id), null, 2) + "\n");
    });

  program
    .command("list")
    .description("list containers")
    .option("-f, --format <format>", "table or json", "table")
    .option("-q, --quiet", "print only the ids")
    .action(async (flags: { format: string; quiet?: boolean }) => {
      if (flags.format !== "table" && flags.format !== "json") {
        throw new KataError(Code.InvalidArgument, `--format ${JSON.stringify(flags.format)}: table or json`);
      }
      const rows = await listContainers(root(), (msg, sid) => {
        process.stderr.write(`kata-ts: warning: sandbox ${sid}: state not readable: ${msg}\n`);
      });
      if (flags.quiet === true) process.stdout.write(rows.map((r) => r.id + "\n").join(""));
      else if (flags.format === "json") process.stdout.write(JSON.stringify(rows) + "\n");
      else process.stdout.write(listTable(rows));
    });
}
