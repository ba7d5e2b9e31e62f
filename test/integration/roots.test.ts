// Isolation by --root: a sandbox id is unique under one root only, so everything a sandbox names on the
// host outside its root (its network namespace, its default cgroup) must be scoped by the root. Two roots, one id, both live.

import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { netnsName } from "../../src/network/netns.js";
import { runDirScope } from "../../src/sandbox/persist.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCli, runCliToFiles } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const vmTimeout = 240_000;

describe(
  "two --roots with the same container id (real VMs)",
  { skip: requires("root", "qemu", "image", "netns") },
  () => {
    let work = "";
    const roots: string[] = [];
    const id = `same${process.pid}`;

    before(async () => {
      work = await mkdtemp(path.join(tmpdir(), "kata-ts-roots-"));
      roots.push(await makeRunRoot(), await makeRunRoot());
    });

    after(async () => {
      for (const root of roots) {
        await runCli(["--root", root, "delete", "--force", id], { env, timeoutMs: vmTimeout });
        await removeRunRoot(root);
      }
      await rm(work, { recursive: true, force: true });
    });

    it(
      "creates both, each in its own network namespace, and deletes each without touching the other",
      { timeout: vmTimeout * 2 },
      async () => {
        const bundle = await makeBusyboxBundle({ runner }, { dir: path.join(work, "b"), args: ["sleep", "600"] });
        for (const root of roots) {
          const created = await runCliToFiles(["--root", root, "create", "--bundle", bundle, id], work, {
            env,
            timeoutMs: vmTimeout,
          });
          assert.equal(created.code, 0, created.stderr);
        }
        const names = roots.map((root) => netnsName(id, runDirScope(root)));
        assert.notEqual(names[0], names[1]);
        const present = await readdir("/var/run/netns");
        for (const n of names) assert.ok(present.includes(n), `netns ${n} exists: ${present.join(" ")}`);
        // Neither gives a cgroupsPath: each gets its own default host cgroup, scoped by its root.
        const cgroups = roots.map((root) => `/sys/fs/cgroup/memory/kata_${runDirScope(root)}_${id}`);
        for (const cg of cgroups) assert.ok((await readdir(cg)).length > 0, `cgroup ${cg} exists`);

        const [first, second] = roots as [string, string];
        const del = await runCli(["--root", first, "delete", "--force", id], { env, timeoutMs: vmTimeout });
        assert.equal(del.code, 0, del.stderr);
        const state = await runCli(["--root", second, "state", id], { env, timeoutMs: vmTimeout });
        assert.equal(state.code, 0, state.stderr);
        assert.equal((JSON.parse(state.stdout.toString()) as { status: string }).status, "created");
        assert.ok(
          (await readdir("/var/run/netns")).includes(names[1] ?? ""),
          "the other root's namespace is untouched",
        );

        assert.equal(
          (await runCli(["--root", second, "delete", "--force", id], { env, timeoutMs: vmTimeout })).code,
          0,
        );
        assert.deepEqual(await netnsLeft([id]), []);
        for (const root of roots) assert.deepEqual(await leftovers(root), []);
        for (const cg of cgroups) await assert.rejects(readdir(cg), /ENOENT/, `cgroup ${cg} removed`);
      },
    );
  },
);
