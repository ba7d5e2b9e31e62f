// The OCI CLI's other verbs on a real sandbox: spec, check, env, ps, pause/resume, update, events,
// kill by name and number, state along the way.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCli, runCliToFiles } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const vmTimeout = 180_000;

describe("OCI CLI verbs (real VM)", { skip: requires("root", "qemu", "image", "netns") }, () => {
  let work = "";
  let root = "";
  const cli = async (...args: string[]): Promise<{ code: number | null; out: string; err: string }> => {
    const r = await runCli(["--root", root, ...args], { env, timeoutMs: vmTimeout });
    return { code: r.code, out: r.stdout.toString(), err: r.stderr };
  };
  const status = async (id: string): Promise<string> =>
    (JSON.parse((await cli("state", id)).out) as { status: string }).status;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-verbs-"));
    root = await makeRunRoot();
  });

  after(async () => {
    await cli("delete", "--force", "verbs");
    await rm(work, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  it("writes a default spec once", async () => {
    assert.equal((await cli("spec", "--bundle", work)).code, 0);
    const spec = JSON.parse(await readFile(path.join(work, "config.json"), "utf8")) as {
      ociVersion: string;
      root: { path: string };
    };
    assert.equal(spec.root.path, "rootfs");

    const again = await cli("spec", "--bundle", work);

    assert.notEqual(again.code, 0);
    assert.match(again.err, /config\.json already exists/);
  });

  it("checks the host and reports its environment", async () => {
    const check = await cli("check");
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /System is capable of running kata-ts containers/);

    const envOut = await cli("env", "--json");

    assert.equal(envOut.code, 0, envOut.err);
    const report = JSON.parse(envOut.out) as {
      Hypervisor: { MachineType: string };
      Kernel: { Path: string };
      Host: { Architecture: string };
    };
    assert.equal(report.Hypervisor.MachineType, "microvm");
    assert.match(report.Kernel.Path, /vmlinux$/);
    assert.equal(report.Host.Architecture, "x64");
  });

  it("lists, pauses, resumes, updates and kills a running sandbox", { timeout: vmTimeout }, async () => {
    const dir = await makeBusyboxBundle(
      { runner },
      { dir: path.join(work, "b"), args: ["sh", "-c", "while true; do sleep 1; done"] },
    );
    const created = await runCliToFiles(["--root", root, "create", "--bundle", dir, "verbs"], work, {
      env,
      timeoutMs: vmTimeout,
    });
    assert.equal(created.code, 0, created.stderr);
    assert.equal(await status("verbs"), "created");
    assert.equal((await cli("start", "verbs")).code, 0);
    assert.equal(await status("verbs"), "running");

    const pids = JSON.parse((await cli("ps", "--format", "json", "verbs")).out) as number[];
    assert.ok(pids.length >= 1 && pids.every((p) => Number.isInteger(p) && p > 0), String(pids));
    const table = (await cli("ps", "verbs")).out.split("\n");
    assert.match(table[0] ?? "", /^PID\s+USER/);
    assert.ok(
      table.some((l) => /while true|sleep/.test(l)),
      table.join("\n"),
    );
    // runc's ps options go to the guest's busybox ps; only the container's rows are kept.
    const own = (await cli("ps", "verbs", "-o", "pid,comm")).out.trim().split("\n");
    assert.match(own[0] ?? "", /^\s*PID\s+COMMAND$/);
    assert.ok(
      own.some((l) => /^\s*(\d+)\s+sh$/.exec(l) !== null && pids.includes(Number(l.trim().split(/\s+/)[0]))),
      own.join("\n"),
    );
    assert.ok(!own.some((l) => /kata-ts-agent|init$/.test(l)), own.join("\n"));
    const badOpt = await cli("ps", "verbs", "-Q");
    assert.notEqual(badOpt.code, 0);
    assert.match(badOpt.err, /ps -Q: exit code 1: .*(invalid|unrecognized) option/i);
    const noPid = await cli("ps", "verbs", "-o", "comm");
    assert.notEqual(noPid.code, 0);
    assert.match(noPid.err, /no PID column/);

    assert.equal((await cli("pause", "verbs")).code, 0);
    assert.equal(await status("verbs"), "paused");
    assert.equal((await cli("resume", "verbs")).code, 0);
    assert.equal(await status("verbs"), "running");

    const resources = path.join(work, "resources.json");
    await writeFile(resources, JSON.stringify({ pids: { limit: 64 } }));
    const upd = await cli("update", "--resources", resources, "verbs");
    assert.equal(upd.code, 0, upd.err);
    const ev = await cli("events", "--stats", "verbs");
    assert.equal(ev.code, 0, ev.err);
    const stats = JSON.parse(ev.out) as {
      type: string;
      id: string;
      data: { pids?: { limit?: number } };
    };
    assert.equal(stats.type, "stats");
    assert.equal(stats.id, "verbs");
    assert.equal(stats.data.pids?.limit, 64);

    const bad = await cli("kill", "verbs", "NOSUCHSIG");
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /unknown signal "NOSUCHSIG"/);
    // events without --stats ends when the container stops, not at its next interval (10 minutes away).
    let printedFirst: () => void = () => undefined;
    const printed = new Promise<void>((resolve) => (printedFirst = resolve));
    const following = runCli(["--root", root, "events", "--interval", "10m", "verbs"], {
      env,
      timeoutMs: vmTimeout,
      onStdout: (soFar) => {
        if (soFar.includes("\n")) printedFirst();
      },
    });
    await printed;
    const killedAt = Date.now();
    assert.equal((await cli("kill", "verbs", "9")).code, 0);
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.ok(Date.now() - killedAt < 60_000, `events ended ${Date.now() - killedAt} ms after the kill`);
    const types = followed.stdout
      .toString()
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { type: string }).type);
    assert.deepEqual(types, ["stats"]);
    const waited = await cli("wait", "verbs");
    assert.match(waited.out, /^137 /);
    assert.equal(await status("verbs"), "stopped");
    assert.equal((await cli("kill", "verbs", "SIGKILL")).code, 0, "SIGKILL of a stopped container is a no-op");

    assert.equal((await cli("delete", "verbs")).code, 0);
    assert.deepEqual(await leftovers(root), []);
    assert.deepEqual(await netnsLeft(["verbs"]), []);
  });

  it(
    "run -d returns with the container running (a one-character id, as runc allows); delete --force ends it",
    { timeout: vmTimeout },
    async () => {
      const dir = await makeBusyboxBundle({ runner }, { dir: path.join(work, "d"), args: ["sleep", "600"] });
      const pidFile = path.join(work, "d.pid");
      const run = await runCliToFiles(
        ["--root", root, "run", "-d", "--bundle", dir, "--pid-file", pidFile, "d"],
        work,
        {
          env,
          timeoutMs: vmTimeout,
        },
      );
      assert.equal(run.code, 0, run.stderr);
      assert.equal(await status("d"), "running");
      const pid = Number((await readFile(pidFile, "utf8")).trim());
      assert.ok(Number.isInteger(pid) && pid > 0, `pid file holds a pid: ${pid}`);
      process.kill(pid, 0);

      const refused = await cli("run", "--pid-file", pidFile, "--bundle", dir, "d2");
      assert.notEqual(refused.code, 0);
      assert.match(refused.err, /--pid-file and --console-socket go with run -d/);

      assert.equal((await cli("delete", "--force", "d")).code, 0);
      assert.deepEqual(await leftovers(root), []);
      assert.deepEqual(await netnsLeft(["d"]), []);
    },
  );
});
