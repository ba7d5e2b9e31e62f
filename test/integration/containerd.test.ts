// kata-ts as a containerd runtime, driven by the real containerd and ctr (Debian's 1.6): the shim v2
// binary's start and delete, the task API from containerd, rootfs from containerd's snapshotter, exit
// codes and events. Each container runs in a real VM.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { delay } from "../../src/base/async.js";
import { requires } from "../helpers/requires.js";
import { shimBinaryName, startContainerd, testImageName, type TestContainerd } from "../helpers/containerd.js";
import { leftovers } from "../helpers/cli.js";
import { vmTimeoutMs } from "../helpers/vm-world.js";
import { testImageDir } from "../helpers/requires.js";

const runtime = "io.containerd.kata-ts.v2";

describe(
  "containerd shim v2 (real containerd, ctr, real VMs)",
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
      "runs `ctr run --rm` in a VM: the guest kernel's release is printed, and nothing is left",
      { timeout: vmTimeoutMs },
      async () => {
        assert.ok(ctrd !== undefined);
        const manifest = JSON.parse(await readFile(path.join(testImageDir, "manifest.json"), "utf8")) as {
          kernelRelease: string;
        };
        const r = await ctrd.ctr(["run", "--rm", "--runtime", runtime, testImageName, "uname1", "uname", "-r"]);
        assert.equal(r.code, 0, `${r.stderr}\n${await ctrd.log()}`);
        assert.equal(r.stdout.trim(), manifest.kernelRelease, "the container ran on the guest kernel, not the host's");
        assert.deepEqual(await leftovers(ctrd.kataRoot), []);
        const tasks = await ctrd.ctr(["tasks", "ls", "-q"]);
        assert.equal(tasks.stdout.trim(), "");
      },
    );

    it("propagates exit codes (0, 3)", { timeout: vmTimeoutMs }, async () => {
      assert.ok(ctrd !== undefined);
      for (const code of [0, 3]) {
        const r = await ctrd.ctr([
          "run",
          "--rm",
          "--runtime",
          runtime,
          testImageName,
          `exit${code}`,
          "sh",
          "-c",
          `exit ${code}`,
        ]);
        assert.equal(r.code, code, r.stderr);
      }
      assert.deepEqual(await leftovers(ctrd.kataRoot), []);
    });

    it("answers -v and refuses a start without its flags, with usage", async () => {
      assert.ok(ctrd !== undefined);
      const shim = path.join(ctrd.dir, "bin", shimBinaryName);
      const { NodeProcessRunner } = await import("../../src/platform/process.js");
      const runner = new NodeProcessRunner();
      const v = await runner.run(shim, ["-v"]);
      assert.equal(v.code, 0);
      assert.match(v.stdout, /containerd-shim-kata-ts-v2/);
      const bad = await runner.run(shim, ["start"], { cwd: ctrd.dir });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /missing -id/);
      assert.match(bad.stderr, /usage: containerd-shim-kata-ts-v2/);
      assert.deepEqual(await leftovers(ctrd.kataRoot), []);
    });

    it("refuses a start for a pod container whose sandbox is not running, naming it, leaving nothing", async () => {
      assert.ok(ctrd !== undefined);
      const { NodeProcessRunner } = await import("../../src/platform/process.js");
      const { makeBusyboxBundle } = await import("../../src/tools/busybox-bundle.js");
      const runner = new NodeProcessRunner();
      const bundle = await makeBusyboxBundle(
        { runner },
        {
          dir: path.join(ctrd.dir, "orphan-bundle"),
          args: ["true"],
          edit: (spec) => {
            spec.annotations = {
              "io.kubernetes.cri.container-type": "container",
              "io.kubernetes.cri.sandbox-id": "nosuchsandbox",
            };
          },
        },
      );
      const shim = path.join(ctrd.dir, "bin", shimBinaryName);
      const r = await runner.run(shim, ["-namespace", "k8s.io", "-id", "orphan1", "start"], {
        cwd: bundle,
        env: { ...process.env, KATA_TS_ROOT: ctrd.kataRoot },
      });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /container orphan1: the service of sandbox nosuchsandbox is not running/);
      await assert.rejects(readFile(path.join(bundle, "address")), /ENOENT/);
      assert.deepEqual(await leftovers(ctrd.kataRoot), []);
    });

    it(
      "execs in a running task (output, exit code), reports 137 after ctr task kill -s KILL, and publishes the task events in containerd's order",
      { timeout: vmTimeoutMs },
      async () => {
        assert.ok(ctrd !== undefined);
        const events = spawn("ctr", ["--address", ctrd.address, "events"], { stdio: ["ignore", "pipe", "ignore"] });
        let seen = "";
        events.stdout.on("data", (d: Buffer) => {
          seen += d.toString();
        });
        try {
          const id = `killed${process.pid}`;
          const run = await ctrd.ctr(["run", "-d", "--runtime", runtime, testImageName, id, "sleep", "600"]);
          assert.equal(run.code, 0, run.stderr);
          const exec = await ctrd.ctr(["task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo from-exec; exit 5"]);
          assert.equal(exec.stdout, "from-exec\n");
          assert.equal(exec.code, 5, exec.stderr);
          const kill = await ctrd.ctr(["task", "kill", "-s", "SIGKILL", id]);
          assert.equal(kill.code, 0, kill.stderr);
          const end = Date.now() + 30_000;
          let listed = "";
          while (Date.now() < end) {
            listed = (await ctrd.ctr(["task", "ls"])).stdout;
            if (new RegExp(`${id}\\s+\\d+\\s+STOPPED`).test(listed)) break;
            await delay(300);
          }
          assert.match(listed, new RegExp(`${id}\\s+\\d+\\s+STOPPED`));
          const del = await ctrd.ctr(["task", "delete", id]);
          // ctr 1.6's task delete reports a non-zero exit status as a warning.
          assert.equal(del.code, 0, del.stderr);
          assert.match(del.stderr, /exit with non-zero exit code 137/);
          assert.equal((await ctrd.ctr(["containers", "delete", id])).code, 0);
          await delay(1000);
          const topics = [...seen.matchAll(/(\/tasks\/[a-z-]+)/g)].map((m) => m[1]);
          const order = [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/delete",
          ];
          for (const t of order) assert.ok(topics.includes(t), `event ${t} published: ${topics.join(" ")}`);
          assert.ok(topics.indexOf("/tasks/create") < topics.indexOf("/tasks/start"), topics.join(" "));
          assert.ok(topics.lastIndexOf("/tasks/exit") < topics.indexOf("/tasks/delete"), topics.join(" "));
          assert.deepEqual(await leftovers(ctrd.kataRoot), []);
        } finally {
          events.kill();
        }
      },
    );
  },
);
