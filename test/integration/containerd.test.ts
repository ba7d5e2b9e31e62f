// kata-ts as a containerd runtime, driven by the real containerd and ctr (Debian's 1.6): the shim v2
// binary's start and delete, the task API from containerd, rootfs from containerd's snapshotter, exit
// codes and events. Each container runs in a real VM.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
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
  },
);
