// Verbs that ask the guest: ps, events, and the small state changes pause, resume, update; plus spec.
// (state and list read the state directory: state.ts.)

import { access, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Any } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { Code, KataError, describeError, ignoreCode, ignoreErrno } from "../../base/errors.js";
import { delay } from "../../base/async.js";
import { defaultSpec } from "../../oci/default-spec.js";
import { parseLinuxResources } from "../../oci/parse-spec.js";
import { guestPsHeader } from "../../protocol/guest-paths.js";
import { checkPsArgs } from "../../protocol/ps-args.js";
import { StateStore } from "../../sandbox/persist.js";
import { anyTypes, formatKey, fromJsonAny, jsonAny } from "../../shim/json-any.js";
import type { RuntimeContext } from "../runtime-context.js";
import { withTask } from "../service-client.js";
import { eventLine, parseGoDuration, runcStats } from "../runc-events.js";
import { resourcesFromFlags, type UpdateFlags } from "../update-flags.js";
import { containerState } from "./state.js";

async function readResources(file: string): Promise<unknown> {
  const text =
    file === "-"
      ? await new Promise<string>((resolve) => {
          let s = "";
          process.stdin
            .setEncoding("utf8")
            .on("data", (d: string) => {
              s += d;
            })
            .on("end", () => {
              resolve(s);
            });
        })
      : await readFile(file, "utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KataError(Code.InvalidArgument, `--resources ${file}: not valid JSON`, { cause: e });
  }
}

/** Asks the service for kata-ts's payloads (ps rows, the agent's stats), not containerd's. */
const ownFormat = { metadata: { [formatKey]: "kata-ts" } };

interface PsRowInfo {
  readonly header: readonly string[];
  readonly fields: readonly string[];
}

/** A Pids row as the service sends it (see task-service: kata-ts/ps-row+json); the pid alone otherwise. */
function psRowOf(pid: number, info: Any | undefined): PsRowInfo {
  if (info === undefined) return { header: ["PID"], fields: [String(pid)] };
  const v = fromJsonAny(info, anyTypes.psRow, `ps row of pid ${pid}`);
  const ok = (x: unknown): x is string[] => Array.isArray(x) && x.every((f) => typeof f === "string");
  if (typeof v !== "object" || v === null || !("header" in v) || !("fields" in v) || !ok(v.header) || !ok(v.fields)) {
    throw new KataError(Code.Internal, `ps row of pid ${pid}: not a {header, fields} object`);
  }
  return { header: v.header, fields: v.fields };
}

/** Columns padded to their widest cell; the last column takes the rest of each row (the command). */
export function formatPsTable(header: readonly string[], rows: readonly PsRowInfo[]): string {
  const n = Math.max(1, header.length);
  const cells = [header, ...rows.map((r) => r.fields)].map((f) =>
    f.length <= n ? [...f] : [...f.slice(0, n - 1), f.slice(n - 1).join(" ")],
  );
  const widths = Array.from({ length: n }, (_, i) => Math.max(...cells.map((c) => (c[i] ?? "").length)));
  return cells
    .map((c) =>
      c
        .map((cell, i) => (i === n - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join(" ")
        .trimEnd(),
    )
    .join("\n");
}

/** runc's update flags (besides --resources); see update-flags.ts for the mapping. */
const updateOptions: readonly (readonly [string, string])[] = [
  ["--memory <bytes>", "memory limit (bytes, or 512m, 1g)"],
  ["--memory-reservation <bytes>", "memory reservation or soft limit"],
  ["--memory-swap <bytes>", "memory + swap limit; -1 for unlimited swap"],
  ["--kernel-memory <bytes>", "kernel memory limit (cgroup v1 only; the guest's cgroup v2 ignores it)"],
  ["--kernel-memory-tcp <bytes>", "kernel TCP buffer limit (cgroup v1 only; ignored as --kernel-memory)"],
  ["--cpu-share <shares>", "CPU shares (relative weight)"],
  ["--cpu-shares <shares>", "the same as --cpu-share"],
  ["--cpu-period <usecs>", "CPU CFS period"],
  ["--cpu-quota <usecs>", "CPU CFS quota per period; -1 for none"],
  ["--cpu-rt-period <usecs>", "CPU realtime period"],
  ["--cpu-rt-runtime <usecs>", "CPU realtime runtime per period"],
  ["--cpuset-cpus <cpus>", "CPUs to use (of the VM's)"],
  ["--cpuset-mems <nodes>", "memory nodes to use (of the VM's)"],
  ["--pids-limit <n>", "maximum number of pids; -1 for none"],
  ["--blkio-weight <weight>", "block IO weight, 10 to 1000"],
  ["--l3-cache-schema <schema>", "Intel RDT: not supported"],
  ["--mem-bw-schema <schema>", "Intel RDT: not supported"],
];

export function registerInspect(program: Command, ctx: () => RuntimeContext): void {
  const store = (): StateStore => new StateStore(ctx().flags.root);

  program
    .command("ps")
    .description("list the processes of a container (guest pids)")
    .argument("<container-id>")
    .argument("[ps-options...]", "options of the guest's busybox ps, e.g. -ef or -o pid,comm (see docs/oci-cli.md)")
    .option("-f, --format <format>", "table or json", "table")
    // runc's `ps ID -ef`: what follows the id is ps's.
    .passThroughOptions()
    .action(async (id: string, psOptions: string[], flags: { format: string }) => {
      if (flags.format !== "table" && flags.format !== "json") {
        throw new KataError(Code.InvalidArgument, `--format ${JSON.stringify(flags.format)}: table or json`);
      }
      // As runc: json is the pids alone, whatever the ps options.
      const psArgs = flags.format === "json" ? [] : psOptions;
      checkPsArgs(psArgs);
      const r = await withTask(ctx(), id, (task) => task.pids({ id, psArgs }, ownFormat));
      if (flags.format === "json") {
        process.stdout.write(JSON.stringify(r.processes.map((p) => p.pid)) + "\n");
        return;
      }
      const rows = r.processes.map((p) => psRowOf(p.pid, p.info));
      // No row, no header from the guest: its default one, or just PID (which any options keep).
      const header = rows[0]?.header ?? (psArgs.length === 0 ? guestPsHeader.split(/\s+/) : ["PID"]);
      process.stdout.write(formatPsTable(header, rows) + "\n");
    });

  program
    .command("pause")
    .description("freeze every process of a container")
    .argument("<container-id>")
    .action(async (id: string) => {
      await withTask(ctx(), id, (task) => task.pause({ id }));
    });

  program
    .command("resume")
    .description("thaw a paused container")
    .argument("<container-id>")
    .action(async (id: string) => {
      await withTask(ctx(), id, (task) => task.resume({ id }));
    });

  const update = program
    .command("update")
    .description("update a container's resource limits (runc's flags, or a linux.resources file)")
    .argument("<container-id>")
    .option("-r, --resources <file>", "LinuxResources JSON (runtime-spec linux.resources), or - for stdin; goes alone");
  for (const [flag, help] of updateOptions) update.option(flag, help);
  update.action(async (id: string, flags: UpdateFlags) => {
    // Checked first, even with --resources: it refuses other flags next to it.
    const fromFlags = resourcesFromFlags(flags);
    const doc = flags.resources === undefined ? fromFlags : await readResources(flags.resources);
    const what = flags.resources === undefined ? "update flags" : `--resources ${flags.resources}`;
    const resources = parseLinuxResources(doc, what);
    await withTask(ctx(), id, (task) => task.update({ id, resources: jsonAny(anyTypes.resources, resources) }));
  });

  program
    .command("events")
    .description("print the container's resource usage (runc's JSON stats events) and its OOM kills")
    .argument("<container-id>")
    .option("--stats", "print one stats event and exit")
    .option("--interval <duration>", "time between stats events (a Go duration: 1s, 500ms)", "5s")
    .action(async (id: string, flags: { stats?: boolean; interval: string }) => {
      const intervalMs = parseGoDuration(flags.interval, "--interval");
      if (intervalMs <= 0)
        throw new KataError(Code.InvalidArgument, `--interval ${flags.interval}: must be more than 0`);
      const root = ctx().flags.root;
      let oomSeen = 0;
      // runc's events print one {"type":"oom"} per kill; the service counts them in the state.
      const printOoms = async (): Promise<void> => {
        const sid = await store().sandboxOf(id);
        const kills =
          sid === undefined ? 0 : ((await store().load(sid))?.containers.find((c) => c.id === id)?.oomKills ?? 0);
        for (; oomSeen < kills; oomSeen++) process.stdout.write(eventLine("oom", id));
      };
      const stopped = async (): Promise<boolean> => {
        const st = await containerState(root, id).catch(ignoreCode(Code.NotFound));
        return st === undefined || st.status === "stopped";
      };
      await withTask(ctx(), id, async (task) => {
        // Without --stats it ends as soon as the container stops (or is deleted), not an interval later:
        // the service's wait answers then. A wait that fails leaves the check of the state after each interval.
        const exited =
          flags.stats === true
            ? undefined
            : task.wait({ id }).then(
                () => true,
                (e: unknown) => {
                  ctx().logger.debug("events: waiting for the container failed", { err: describeError(e) });
                  return false;
                },
              );
        for (;;) {
          await printOoms();
          const r = await task.stats({ id }, ownFormat).catch(async (e: unknown) => {
            // Stopped between two events: the end, not an error.
            if (flags.stats !== true && (await stopped())) return undefined;
            throw e;
          });
          if (r === undefined) break;
          process.stdout.write(eventLine("stats", id, runcStats(fromJsonAny(r.stats, anyTypes.stats, "stats"))));
          if (flags.stats === true) return;
          const pause = new AbortController();
          const ended = await Promise.race([
            exited ?? new Promise<boolean>(() => undefined),
            delay(intervalMs, pause.signal).then(() => false, ignoreCode(Code.Cancelled)),
          ]).finally(() => {
            pause.abort();
          });
          if (ended === true || (await stopped())) break;
        }
        // Kills counted while it stopped.
        await printOoms().catch(ignoreCode(Code.NotFound));
      });
    });

  program
    .command("spec")
    .description("write a default config.json")
    .option("-b, --bundle <dir>", "directory to write it in", ".")
    .option("--rootless", "not supported: kata-ts runs containers as root (in a VM)")
    .action(async (flags: { bundle: string; rootless?: boolean }) => {
      if (flags.rootless === true) {
        throw new KataError(
          Code.InvalidArgument,
          "--rootless: not supported; kata-ts runs as root and boots a VM per pod",
        );
      }
      const file = path.join(flags.bundle, "config.json");
      const exists = await access(file).then(() => true, ignoreErrno("ENOENT"));
      if (exists === true) throw new KataError(Code.AlreadyExists, `${file} already exists`);
      await writeFile(file, JSON.stringify(defaultSpec(), null, 2) + "\n");
    });
}
