// runc's CLI contract: every verb on the same bundle under the real runc and the real kata-ts (one VM
// for all the checks), comparing exit codes, state fields and JSON shapes. Where kata-ts differs on
// purpose (docs/oci-cli.md lists each difference), the test says so and checks kata-ts's message.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { cliPath, leftovers, makeRunRoot, netnsLeft, removeRunRoot } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const vmTimeout = 240_000;

interface Result {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

type Runtime = "runc" | "kata-ts";

/** runc's state fields (runc 1.1): kata-ts prints each of them. */
const stateKeys = ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"];

describe(
  "runc's CLI contract, runc and kata-ts side by side",
  { skip: requires("root", "qemu", "image", "netns", "runc") },
  () => {
    let work = "";
    let kataRoot = "";
    let runcRoot = "";
    let bundle = "";
    const id = "rc1";

    /** Runs a runtime with stdout and stderr in files: a created container keeps its caller's stdio. */
    const run = async (rt: Runtime, args: readonly string[], timeoutMs = vmTimeout): Promise<Result> => {
      const tag = `${rt}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
      const outFile = path.join(work, `${tag}.out`);
      const errFile = path.join(work, `${tag}.err`);
      const out = await open(outFile, "a");
      const err = await open(errFile, "a");
      try {
        const [bin, argv] =
          rt === "runc"
            ? ["runc", ["--root", runcRoot, ...args]]
            : [process.execPath, [cliPath, "--root", kataRoot, ...args]];
        const code = await new Promise<number | null>((resolve, reject) => {
          const child = spawn(bin, argv, { env, cwd: bundle, stdio: ["ignore", out.fd, err.fd] });
          const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
          child.once("error", reject);
          child.once("close", (c) => {
            clearTimeout(timer);
            resolve(c);
          });
        });
        return { code, out: await readFile(outFile, "utf8"), err: await readFile(errFile, "utf8") };
      } finally {
        await out.close();
        await err.close();
      }
    };
    const both = async (args: readonly string[]): Promise<Record<Runtime, Result>> => ({
      runc: await run("runc", args),
      "kata-ts": await run("kata-ts", args),
    });
    const json = (r: Result, what: string): unknown => {
      assert.equal(r.code, 0, `${what}: ${r.err}`);
      return JSON.parse(r.out) as unknown;
    };
    const state = async (rt: Runtime): Promise<Record<string, unknown>> =>
      json(await run(rt, ["state", id]), `${rt} state`) as Record<string, unknown>;
    const statuses = async (): Promise<[unknown, unknown]> => [
      (await state("runc"))["status"],
      (await state("kata-ts"))["status"],
    ];

    before(async () => {
      work = await mkdtemp(path.join(tmpdir(), "kata-ts-runc-contract-"));
      kataRoot = await makeRunRoot();
      runcRoot = path.join(work, "runc-root");
      bundle = await makeBusyboxBundle(
        { runner },
        { dir: path.join(work, "bundle"), args: ["sh", "-c", "while true; do sleep 1; done"] },
      );
    });

    after(async () => {
      await run("runc", ["delete", "--force", id]);
      await run("kata-ts", ["delete", "--force", id]);
      await rm(work, { recursive: true, force: true });
      await removeRunRoot(kataRoot);
    });

    it("answers --version and features alike", async () => {
      const v = await both(["--version"]);
      for (const [rt, r] of Object.entries(v)) {
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, new RegExp(`^${rt} version \\S+\\n`));
        assert.match(r.out, /^spec: 1\.\d+\.\d+/m);
      }
      const f = await both(["features"]);
      for (const r of Object.values(f)) {
        const doc = json(r, "features") as Record<string, unknown>;
        assert.match(String(doc["ociVersionMin"]), /^1\.0\./);
        assert.ok(Array.isArray(doc["hooks"]));
      }
    });

    it("fails alike on a container that does not exist; delete --force of one is not an error", async () => {
      for (const verb of [["state"], ["delete"], ["kill"], ["start"], ["pause"], ["ps"], ["events", "--stats"]]) {
        const r = await both([...verb, "nosuch"]);
        assert.equal(r.runc.code, 1, `runc ${verb.join(" ")}`);
        assert.equal(r["kata-ts"].code, 1, `kata-ts ${verb.join(" ")}: ${r["kata-ts"].err}`);
        assert.match(r["kata-ts"].err, /nosuch does not exist/);
      }
      const forced = await both(["delete", "--force", "nosuch"]);
      assert.deepEqual([forced.runc.code, forced["kata-ts"].code], [0, 0], forced["kata-ts"].err);
      const list = await both(["list", "--format", "json"]);
      // runc prints null for none; kata-ts an empty array.
      assert.deepEqual(json(list.runc, "runc list"), null);
      assert.deepEqual(json(list["kata-ts"], "kata-ts list"), []);
    });

    it("refuses what Go refuses in --interval, and unknown flags", async () => {
      const noUnit = await both(["events", "--interval", "5", id]);
      assert.notEqual(noUnit.runc.code, 0);
      assert.notEqual(noUnit["kata-ts"].code, 0);
      assert.match(noUnit["kata-ts"].err, /--interval "5": missing unit/);
      const unknown = await both(["state", "--no-such-flag", id]);
      assert.notEqual(unknown.runc.code, 0);
      assert.notEqual(unknown["kata-ts"].code, 0);
    });

    it("creates, starts, lists, pauses and resumes with the same states", { timeout: vmTimeout * 2 }, async () => {
      const created = await both(["create", "--bundle", bundle, id]);
      assert.equal(created.runc.code, 0, created.runc.err);
      assert.equal(created["kata-ts"].code, 0, created["kata-ts"].err);

      const s = { runc: await state("runc"), "kata-ts": await state("kata-ts") };
      for (const [rt, st] of Object.entries(s)) {
        assert.deepEqual(
          stateKeys.filter((k) => !(k in st)),
          [],
          `${rt} state has runc's fields`,
        );
        assert.equal(st["status"], "created", rt);
        assert.equal(st["id"], id);
        assert.equal(st["bundle"], bundle);
        assert.equal(st["rootfs"], path.join(bundle, "rootfs"));
        assert.equal(st["owner"], "");
        assert.ok(Number.isInteger(st["pid"]) && (st["pid"] as number) > 0, `${rt} pid ${String(st["pid"])}`);
        assert.ok(!Number.isNaN(Date.parse(String(st["created"]))), `${rt} created ${String(st["created"])}`);
        assert.match(String(st["created"]), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      }
      assert.deepEqual(Object.keys(s["kata-ts"]).sort(), Object.keys(s.runc).sort(), "the same fields, no more");

      const again = await both(["create", "--bundle", bundle, id]);
      assert.equal(again.runc.code, 1);
      assert.equal(again["kata-ts"].code, 1);
      assert.match(again["kata-ts"].err, /already exists/);

      const started = await both(["start", id]);
      assert.deepEqual([started.runc.code, started["kata-ts"].code], [0, 0], started["kata-ts"].err);
      assert.deepEqual(await statuses(), ["running", "running"]);

      const lists = await both(["list", "--format", "json"]);
      for (const [rt, r] of Object.entries(lists)) {
        const rows = json(r, `${rt} list`) as Record<string, unknown>[];
        const row = rows.find((x) => x["id"] === id);
        assert.ok(row !== undefined, `${rt} lists ${id}`);
        assert.equal(row["status"], "running");
        assert.equal(row["owner"], "root");
        assert.deepEqual(
          stateKeys.filter((k) => !(k in row)),
          [],
          `${rt} list rows have runc's fields`,
        );
      }
      const quiet = await both(["list", "-q"]);
      assert.deepEqual([quiet.runc.out, quiet["kata-ts"].out], [`${id}\n`, `${id}\n`]);
      const table = await both(["list"]);
      for (const r of Object.values(table)) assert.match(r.out, /^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER/);

      const paused = await both(["pause", id]);
      assert.deepEqual([paused.runc.code, paused["kata-ts"].code], [0, 0], paused["kata-ts"].err);
      assert.deepEqual(await statuses(), ["paused", "paused"]);
      const resumed = await both(["resume", id]);
      assert.deepEqual([resumed.runc.code, resumed["kata-ts"].code], [0, 0], resumed["kata-ts"].err);
      assert.deepEqual(await statuses(), ["running", "running"]);
    });

    it("lists processes as runc (a JSON array of pids); passes ps options to ps (the guest's, for kata-ts)", async () => {
      const ps = await both(["ps", "--format", "json", id]);
      for (const [rt, r] of Object.entries(ps)) {
        const pids = json(r, `${rt} ps`) as unknown[];
        assert.ok(pids.length >= 1 && pids.every((p) => Number.isInteger(p) && (p as number) > 0), `${rt}: ${r.out}`);
      }
      const table = await both(["ps", id]);
      for (const r of Object.values(table)) assert.match(r.out, /PID/);
      const opts = await both(["ps", id, "-ef"]);
      for (const [rt, r] of Object.entries(opts)) {
        assert.equal(r.code, 0, `${rt}: ${r.err}`);
        const lines = r.out.trim().split("\n");
        assert.match(lines[0] ?? "", /\bPID\b/, `${rt}: ${r.out}`);
        assert.ok(lines.length >= 2, `${rt}: no process row: ${r.out}`);
      }
      // runc's json ignores ps options: so does kata-ts.
      const jsonOpts = await both(["ps", "--format", "json", id, "-ef"]);
      for (const [rt, r] of Object.entries(jsonOpts)) assert.ok(Array.isArray(json(r, `${rt} ps -ef`)), r.out);
    });

    it("updates with runc's flags, and events show it in runc's JSON", { timeout: vmTimeout }, async () => {
      const upd = await both(["update", "--pids-limit", "50", "--memory", "256m", id]);
      assert.deepEqual([upd.runc.code, upd["kata-ts"].code], [0, 0], `${upd.runc.err} ${upd["kata-ts"].err}`);

      const ev = await both(["events", "--stats", id]);
      for (const [rt, r] of Object.entries(ev)) {
        const e = json(r, `${rt} events`) as {
          type: string;
          id: string;
          data: {
            cpu: { usage: { total?: number; kernel: number; user: number } };
            memory: { usage: { limit: number; usage?: number } };
            pids: { current?: number; limit?: number };
          };
        };
        assert.equal(e.type, "stats");
        assert.equal(e.id, id);
        assert.ok((e.data.cpu.usage.total ?? 0) > 0, `${rt} cpu.usage.total: ${r.out}`);
        assert.equal(typeof e.data.cpu.usage.kernel, "number");
        assert.ok((e.data.pids.current ?? 0) >= 1, `${rt} pids.current`);
        assert.equal(e.data.pids.limit, 50, `${rt} pids.limit`);
        assert.equal(e.data.memory.usage.limit, 256 * 2 ** 20, `${rt} memory.usage.limit`);
        assert.ok((e.data.memory.usage.usage ?? 0) > 0, `${rt} memory.usage.usage`);
      }
      const runcKeys = Object.keys((JSON.parse(ev.runc.out) as { data: object }).data);
      const kataKeys = Object.keys((JSON.parse(ev["kata-ts"].out) as { data: object }).data);
      assert.deepEqual(
        kataKeys.filter((k) => !runcKeys.includes(k)),
        [],
        "no stats key runc does not have",
      );

      const rdt = await run("kata-ts", ["update", "--l3-cache-schema", "L3:0=f", id]);
      assert.equal(rdt.code, 1);
      assert.match(rdt.err, /--l3-cache-schema: Intel RDT is not supported/);
    });

    it(
      "execs with runc's syntax and flags alike (groups, capabilities, exit status)",
      { timeout: vmTimeout },
      async () => {
        const probe = ["sh", "-c", "id -G; grep CapEff /proc/self/status; exit 3"];
        const r = await both(["exec", "-g", "1234", "--cap", "CAP_NET_ADMIN", id, ...probe]);
        assert.equal(r.runc.code, 3, r.runc.err);
        assert.equal(r["kata-ts"].code, 3, r["kata-ts"].err);
        assert.match(r.runc.out, /\b1234\b/);
        assert.equal(r["kata-ts"].out, r.runc.out, "the same groups and effective capabilities");
        const plain = await both(["exec", id, "ls", "-d", "/"]);
        assert.deepEqual([plain.runc.out, plain["kata-ts"].out], ["/\n", "/\n"], plain["kata-ts"].err);
      },
    );

    it("kills, reports stopped with pid 0, and deletes alike", { timeout: vmTimeout }, async () => {
      const killed = await both(["kill", id, "KILL"]);
      assert.deepEqual([killed.runc.code, killed["kata-ts"].code], [0, 0], killed["kata-ts"].err);
      for (let i = 0; i < 120 && (await statuses()).some((s) => s !== "stopped"); i++) {
        await new Promise((r) => setTimeout(r, 500));
      }
      const s = { runc: await state("runc"), "kata-ts": await state("kata-ts") };
      assert.deepEqual([s.runc["status"], s["kata-ts"]["status"]], ["stopped", "stopped"]);
      assert.deepEqual([s.runc["pid"], s["kata-ts"]["pid"]], [0, 0]);

      const deleted = await both(["delete", id]);
      assert.deepEqual([deleted.runc.code, deleted["kata-ts"].code], [0, 0], deleted["kata-ts"].err);
      const gone = await both(["state", id]);
      assert.deepEqual([gone.runc.code, gone["kata-ts"].code], [1, 1]);
      const forced = await both(["delete", "--force", id]);
      assert.deepEqual([forced.runc.code, forced["kata-ts"].code], [0, 0], "delete --force is idempotent");
      assert.deepEqual(await leftovers(kataRoot), []);
      assert.deepEqual(await netnsLeft([id]), []);
    });

    it("refuses checkpoint and restore with why", async () => {
      for (const verb of ["checkpoint", "restore"]) {
        const r = await run("kata-ts", [verb, id]);
        assert.equal(r.code, 1);
        assert.match(r.err, new RegExp(`^kata-ts: ${verb} is not supported`));
      }
    });
  },
);
