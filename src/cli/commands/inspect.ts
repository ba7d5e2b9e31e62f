// Read-mostly verbs: ps, list, events, and the small state changes pause, resume, update, plus spec.

import { access, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Any } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { Code, KataError, ignoreErrno } from "../../base/errors.js";
import { errField } from "../../base/log.js";
import { delay } from "../../base/async.js";
import { defaultSpec } from "../../oci/default-spec.js";
import { parseLinuxResources } from "../../oci/parse-spec.js";
import { guestPsHeader } from "../../protocol/guest-paths.js";
import { StateStore } from "../../sandbox/persist.js";
import { anyTypes, formatKey, fromJsonAny, jsonAny } from "../../shim/task-service.js";
import type { RuntimeContext } from "../runtime-context.js";
import { serviceListening, withTask } from "../service-client.js";
import { ociState } from "./lifecycle.js";

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

export function registerInspect(program: Command, ctx: () => RuntimeContext): void {
  const store = (): StateStore => new StateStore(ctx().flags.root);

  program
    .command("ps")
    .description("list the processes of a container (guest pids)")
    .argument("<container-id>")
    .option("-f, --format <format>", "table or json", "table")
    .action(async (id: string, flags: { format: string }) => {
      const r = await withTask(ctx(), id, (task) => task.pids({ id }, ownFormat));
      if (flags.format === "json") {
        process.stdout.write(JSON.stringify(r.processes.map((p) => p.pid)) + "\n");
        return;
      }
      if (flags.format !== "table") throw new KataError(Code.InvalidArgument, `unknown format ${flags.format}`);
      const rows = r.processes.map((p) => psRowOf(p.pid, p.info));
      process.stdout.write(formatPsTable(rows[0]?.header ?? guestPsHeader.split(/\s+/), rows) + "\n");
    });

  program
    .command("list")
    .description("list containers")
    .option("-f, --format <format>", "table or json", "table")
    .option("-q, --quiet", "print only the ids")
    .action(async (flags: { format: string; quiet?: boolean }) => {
      const s = store();
      const rows: { id: string; pid: number; status: string; bundle: string; created: string; sandbox: string }[] = [];
      for (const sid of await s.sandboxIds()) {
        const saved = await s.load(sid).catch((e: unknown) => {
          // One unreadable state file must not hide the other sandboxes.
          ctx().logger.warn("list: sandbox state not readable", { sandboxId: sid, err: errField(e) });
          return undefined;
        });
        if (saved === undefined) continue;
        const up = await serviceListening(s.socketPath(sid));
        for (const c of saved.containers) {
          rows.push({
            id: c.id,
            pid: saved.servicePid,
            status: up ? c.status : "stopped",
            bundle: c.bundle,
            created: c.createdAt,
            sandbox: sid,
          });
        }
      }
      if (flags.quiet === true) {
        process.stdout.write(rows.map((r) => r.id + "\n").join(""));
      } else if (flags.format === "json") {
        process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
      } else {
        const header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "SANDBOX"];
        const table = [header, ...rows.map((r) => [r.id, String(r.pid), r.status, r.bundle, r.created, r.sandbox])];
        const widths = header.map((_h, i) => Math.max(...table.map((row) => (row[i] ?? "").length)));
        process.stdout.write(
          table
            .map((row) =>
              row
                .map((c, i) => c.padEnd(widths[i] ?? 0))
                .join("  ")
                .trimEnd(),
            )
            .join("\n") + "\n",
        );
      }
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

  program
    .command("update")
    .description("update a container's resource limits")
    .argument("<container-id>")
    .requiredOption("-r, --resources <file>", "LinuxResources JSON (runtime-spec linux.resources), or - for stdin")
    .action(async (id: string, flags: { resources: string }) => {
      const resources = parseLinuxResources(await readResources(flags.resources), `--resources ${flags.resources}`);
      await withTask(ctx(), id, (task) => task.update({ id, resources: jsonAny(anyTypes.resources, resources) }));
    });

  program
    .command("events")
    .description("print resource usage of a container as JSON events")
    .argument("<container-id>")
    .option("--stats", "print one stats event and exit")
    .option("--interval <seconds>", "seconds between stats events", "5")
    .action(async (id: string, flags: { stats?: boolean; interval: string }) => {
      const intervalMs = Math.max(0.1, Number(flags.interval)) * 1000;
      let oomSeen = 0;
      for (;;) {
        // runc's events print one {"type":"oom"} per kill; the service counts them in the state.
        const sid = await store().sandboxOf(id);
        const kills =
          sid === undefined ? 0 : ((await store().load(sid))?.containers.find((c) => c.id === id)?.oomKills ?? 0);
        for (; oomSeen < kills; oomSeen++) process.stdout.write(JSON.stringify({ type: "oom", id }) + "\n");
        const r = await withTask(ctx(), id, (task) => task.stats({ id }, ownFormat));
        const data = fromJsonAny(r.stats, anyTypes.stats, "stats");
        process.stdout.write(JSON.stringify({ type: "stats", id, data }) + "\n");
        if (flags.stats === true) return;
        await delay(intervalMs);
        if ((await ociState(ctx(), id)).status === "stopped") return;
      }
    });

  program
    .command("spec")
    .description("write a default config.json")
    .option("-b, --bundle <dir>", "directory to write it in", ".")
    .action(async (flags: { bundle: string }) => {
      const file = path.join(flags.bundle, "config.json");
      const exists = await access(file).then(() => true, ignoreErrno("ENOENT"));
      if (exists === true) throw new KataError(Code.AlreadyExists, `${file} already exists`);
      await writeFile(file, JSON.stringify(defaultSpec(), null, 2) + "\n");
    });
}
