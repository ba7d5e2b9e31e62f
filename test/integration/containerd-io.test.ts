// What containerd's own clients decode from kata-ts's shim, and the I/O paths of `ctr run`, with the
// real containerd and ctr (Debian's 1.6) and real VMs: `ctr task metrics` (cgroups v1 Metrics), `ctr task
// ps`, pause and resume, the runtime options' config path, the service's log in containerd's log (the
// `log` fifo), a terminal with resizes, stdin to its end (CloseIO), and 10 MB of output. Three VMs: one long-running
// task serves most checks.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { delay } from "../../src/base/async.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { leftovers, runCli } from "../helpers/cli.js";
import { startContainerd, testImageName, type TestContainerd } from "../helpers/containerd.js";
import { requires } from "../helpers/requires.js";
import { vmTimeoutMs } from "../helpers/vm-world.js";

const runtime = "io.containerd.kata-ts.v2";
const runner = new NodeProcessRunner();

/** Polls `ctr task ls` until the task shows `status`; returns the last listing. */
async function waitStatus(ctrd: TestContainerd, id: string, status: string): Promise<string> {
  const end = Date.now() + 30_000;
  let listed = "";
  while (Date.now() < end) {
    listed = (await ctrd.ctr(["task", "ls"])).stdout;
    if (new RegExp(`^${id}\\s+\\d+\\s+${status}$`, "m").test(listed)) return listed;
    await delay(300);
  }
  return listed;
}

/** `ctr task metrics` table rows: metric name -> value. */
function metricsTable(out: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of out.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k !== undefined && v !== undefined && /^[a-z_.]+$/.test(k)) rows.set(k, v);
  }
  return rows;
}

/** Runs `command` under util-linux `script` (a pty for ctr's -t); stdin stays open until it exits. */
function underPty(command: string): {
  output: () => string;
  until: (re: RegExp, ms: number) => Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
  kill: () => void;
} {
  const child = spawn("script", ["-qfec", command, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    out += d.toString();
  });
  let closed: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once("close", (code) => {
      closed = code;
      child.stdin.end();
      resolve(code);
    });
  });
  return {
    output: () => out,
    async until(re, ms) {
      const end = Date.now() + ms;
      for (;;) {
        const m = out.match(re);
        if (m !== null) return m;
        // "close", not "exit": only then has all of the pty's output been read.
        if (Date.now() > end || closed !== undefined) {
          throw new Error(
            `no ${re} in: ${JSON.stringify(out)} (script ${closed === undefined ? "still runs" : `exited ${closed}`})`,
          );
        }
        await delay(100);
      }
    },
    exited,
    kill: () => child.kill("SIGKILL"),
  };
}

/** The container's side of the terminal checks: prints each size `stty size` reports until `want`. */
function sizeWatcher(want: string): string[] {
  return [
    "sh",
    "-c",
    `last=; i=0; while [ $i -lt 900 ]; do s=$(stty size); if [ "$s" != "$last" ]; then echo "size=$s"; last=$s; fi; [ "$s" = "${want}" ] && exit 0; i=$((i+1)); sleep 0.1; done; exit 1`,
  ];
}

describe(
  "containerd's clients on kata-ts (ctr 1.6: metrics, ps, pause, config path, log fifo, tty, stdin, large output)",
  { skip: requires("root", "qemu", "image", "containerd") },
  () => {
    let ctrd: TestContainerd | undefined;

    before(async () => {
      ctrd = await startContainerd();
    });

    after(async () => {
      await ctrd?.stop();
    });

    it(
      "a task run with --runtime-config-path gets that configuration's memory; ctr task metrics, ctr task ps, pause and resume work on it; the service logs into containerd's log",
      { timeout: vmTimeoutMs },
      async (t) => {
        assert.ok(ctrd !== undefined);
        const id = "io1";
        const config = path.join(ctrd.dir, "small-vm.toml");
        await writeFile(config, "[hypervisor.qemu]\ndefault_memory = 512\n");
        const events = spawn("ctr", ["--address", ctrd.address, "events"], { stdio: ["ignore", "pipe", "ignore"] });
        let seen = "";
        events.stdout.on("data", (d: Buffer) => {
          seen += d.toString();
        });
        try {
          const run = await ctrd.ctr([
            "run",
            "-d",
            "--runtime",
            runtime,
            "--runtime-config-path",
            config,
            testImageName,
            id,
            "sleep",
            "600",
          ]);
          assert.equal(run.code, 0, `${run.stderr}\n${await ctrd.log()}`);

          // 5. The service's own log line, through the bundle's `log` fifo into containerd's output.
          assert.match(await ctrd.log(), /"msg":"service started".*"sandboxId":"io1"/);

          // 6. The configuration file of the runtime options made the VM: 512 MiB, not the default 2048.
          const meminfo = await ctrd.ctr(["task", "exec", "--exec-id", "m1", id, "cat", "/proc/meminfo"]);
          assert.equal(meminfo.code, 0, meminfo.stderr);
          const memTotalKiB = Number(/^MemTotal:\s+(\d+) kB/m.exec(meminfo.stdout)?.[1]);
          assert.ok(memTotalKiB > 300 * 1024 && memTotalKiB <= 512 * 1024, `MemTotal ${memTotalKiB} kB`);

          // 1. ctr decodes the cgroups v1 Metrics.
          const metrics = await ctrd.ctr(["task", "metrics", id]);
          assert.equal(metrics.code, 0, metrics.stderr);
          t.diagnostic(`ctr task metrics:\n${metrics.stdout}`);
          const table = metricsTable(metrics.stdout);
          for (const k of ["memory.usage_in_bytes", "memory.stat.cache", "cpuacct.usage", "pids.current"]) {
            assert.ok(Number(table.get(k)) > 0, `${k} > 0 in:\n${metrics.stdout}`);
          }
          const json = await ctrd.ctr(["task", "metrics", "--format", "json", id]);
          assert.equal(json.code, 0, json.stderr);
          const m = JSON.parse(json.stdout) as {
            memory?: { usage?: { usage?: number }; total_inactive_file?: number };
          };
          assert.ok((m.memory?.usage?.usage ?? 0) > 0, json.stdout);

          // 2. ctr task ps lists the guest's pids (no info it cannot decode); kata-ts ps keeps its table.
          const ps = await ctrd.ctr(["task", "ps", id]);
          assert.equal(ps.code, 0, ps.stderr);
          t.diagnostic(`ctr task ps:\n${ps.stdout}`);
          const ctrPids = [...ps.stdout.matchAll(/^(\d+)\s+-$/gm)].map((x) => Number(x[1]));
          assert.ok(ctrPids.length >= 1, ps.stdout);
          const cliJson = await runCli(["--root", ctrd.kataRoot, "ps", "--format", "json", id]);
          assert.equal(cliJson.code, 0, cliJson.stderr);
          assert.deepEqual(ctrPids, JSON.parse(cliJson.stdout.toString()) as number[]);
          const cliTable = await runCli(["--root", ctrd.kataRoot, "ps", id]);
          assert.equal(cliTable.code, 0, cliTable.stderr);
          assert.match(cliTable.stdout.toString(), /PID.*\n(.*\n)*.*sleep 600/);
          const cliStats = await runCli(["--root", ctrd.kataRoot, "events", "--stats", id]);
          assert.equal(cliStats.code, 0, cliStats.stderr);
          const ev = JSON.parse(cliStats.stdout.toString()) as {
            type: string;
            data: { cpu?: { usage?: { total?: number } } };
          };
          assert.equal(ev.type, "stats");
          assert.ok((ev.data.cpu?.usage?.total ?? 0) > 0, cliStats.stdout.toString());

          // 3. Pause and resume.
          const pause = await ctrd.ctr(["task", "pause", id]);
          assert.equal(pause.code, 0, pause.stderr);
          assert.match(await waitStatus(ctrd, id, "PAUSED"), new RegExp(`^${id}\\s+\\d+\\s+PAUSED$`, "m"));
          const resume = await ctrd.ctr(["task", "resume", id]);
          assert.equal(resume.code, 0, resume.stderr);
          assert.match(await waitStatus(ctrd, id, "RUNNING"), new RegExp(`^${id}\\s+\\d+\\s+RUNNING$`, "m"));

          // 4. exec -t: the pty's size reaches the container (ctr's first ResizePty).
          const tty = underPty(
            `stty rows 30 cols 90; ctr --address ${ctrd.address} task exec -t --exec-id t1 ${id} ${sizeWatcher("30 90")
              .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
              .join(" ")}`,
          );
          try {
            await tty.until(/size=30 90/, 60_000);
            assert.equal(await tty.exited, 0, tty.output());
          } finally {
            tty.kill();
          }

          const kill = await ctrd.ctr(["task", "kill", "-s", "SIGKILL", id]);
          assert.equal(kill.code, 0, kill.stderr);
          await waitStatus(ctrd, id, "STOPPED");
          assert.equal((await ctrd.ctr(["task", "delete", id])).code, 0);
          assert.equal((await ctrd.ctr(["containers", "delete", id])).code, 0);
          await delay(1000);
          const topics = [...seen.matchAll(/(\/tasks\/[a-z-]+)/g)].map((x) => x[1]);
          assert.ok(topics.includes("/tasks/paused"), topics.join(" "));
          assert.ok(topics.includes("/tasks/resumed"), topics.join(" "));
          assert.ok(topics.indexOf("/tasks/paused") < topics.indexOf("/tasks/resumed"), topics.join(" "));
          assert.deepEqual(await leftovers(ctrd.kataRoot), []);
        } finally {
          events.kill();
          // A failure above must not leave its pod to fail the next tests' leftover checks too.
          await ctrd.ctr(["task", "kill", "-s", "SIGKILL", id]);
          await ctrd.ctr(["task", "delete", "--force", id]);
          await ctrd.ctr(["containers", "delete", id]);
        }
      },
    );

    it(
      "ctr run --rm -t: the container sees the terminal's size, and a later resize of ctr's terminal (SIGWINCH)",
      { timeout: vmTimeoutMs },
      async () => {
        assert.ok(ctrd !== undefined);
        const args = sizeWatcher("40 120")
          .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
          .join(" ");
        const tty = underPty(
          `tty; stty rows 30 cols 90; ctr --address ${ctrd.address} run --rm -t --runtime ${runtime} ${testImageName} tty1 ${args}`,
        );
        try {
          const pts = (await tty.until(/^(\/dev\/pts\/\d+)\r?$/m, 10_000))[1] ?? "";
          await tty.until(/size=30 90/, 120_000);
          // Resizing the pty signals its foreground group (ctr) with SIGWINCH; ctr sends ResizePty.
          const resized = await runner.run("stty", ["-F", pts, "rows", "40", "cols", "120"]);
          assert.equal(resized.code, 0, resized.stderr);
          await tty.until(/size=40 120/, 60_000);
          assert.equal(await tty.exited, 0, tty.output());
        } finally {
          tty.kill();
        }
        assert.deepEqual(await leftovers(ctrd.kataRoot), []);
      },
    );

    it(
      "ctr run --rm (ctr 1.6 always attaches stdin; it has no -i): piped stdin reaches the container and its end ends cat (CloseIO); 10 MB of output arrive whole",
      { timeout: vmTimeoutMs },
      async () => {
        assert.ok(ctrd !== undefined);
        const bytes = 10_000_000;
        const child = spawn(
          "ctr",
          [
            "--address",
            ctrd.address,
            "run",
            "--rm",
            "--runtime",
            runtime,
            testImageName,
            "stdin1",
            "sh",
            "-c",
            `cat; head -c ${bytes} /dev/zero`,
          ],
          { stdio: ["pipe", "pipe", "pipe"] },
        );
        const out: Buffer[] = [];
        let err = "";
        child.stdout.on("data", (d: Buffer) => out.push(d));
        child.stderr.on("data", (d: Buffer) => {
          err += d.toString();
        });
        child.stdin.end("hello\n");
        const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
        const all = Buffer.concat(out);

        assert.equal(code, 0, err);
        assert.equal(all.subarray(0, 6).toString(), "hello\n");
        assert.equal(all.length, 6 + bytes, `${all.length} bytes`);
        assert.equal(
          all.subarray(6).every((b) => b === 0),
          true,
        );
        assert.deepEqual(await leftovers(ctrd.kataRoot), []);
      },
    );
  },
);
