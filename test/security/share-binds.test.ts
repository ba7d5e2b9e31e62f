// Attacks on the host side of a sandbox's share, with real mounts and the real kata-ts-mount helper (no
// VM: the guest's part, planting symlinks or swapping directories, is played by this test). Each test
// passes only when the attack fails.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { isKataError, Code } from "../../src/base/errors.js";
import { CommandMounter } from "../../src/platform/mount.js";
import { mountsUnder, parseMountInfo } from "../../src/platform/mountinfo.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { HelperShareBinder } from "../../src/platform/share-binder.js";
import { SharedDir, readSelfMountInfo, sharedDirPaths } from "../../src/storage/shared-dir.js";
import { repoRoot } from "../helpers/cli.js";
import { requires } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const binder = new HelperShareBinder(runner, path.join(repoRoot, "dist", "native", "kata-ts-mount"));

/** File system types mounted at or below `dir` now. */
async function fsTypesUnder(dir: string): Promise<string[]> {
  const entries = parseMountInfo(await readSelfMountInfo());
  return entries.filter((e) => e.mountPoint === dir || e.mountPoint.startsWith(dir + "/")).map((e) => e.fstype);
}

describe("share binds under attack (real mounts, kata-ts-mount)", { skip: requires("root") }, () => {
  let run = "";
  let share: SharedDir;

  before(async () => {
    run = await mkdtemp(path.join(tmpdir(), "kata-ts-sec-"));
    share = new SharedDir(
      { mounter: new CommandMounter(runner), readMountInfo: readSelfMountInfo, binder },
      sharedDirPaths(path.join(run, "state"), "sb1"),
    );
    await share.setup();
  });

  after(async () => {
    await share.teardown();
    assert.deepEqual(mountsUnder(parseMountInfo(await readSelfMountInfo()), run), []);
    await rm(run, { recursive: true, force: true });
  });

  it("CVE-2021-30465: a bind source swapped for a symlink to /proc while it is bound is never mounted", async () => {
    const vol = path.join(run, "vol");
    // The guest's part: the source flips between a directory, nothing, and a symlink to the host's /proc.
    const swapper = spawn(
      "/bin/sh",
      [
        "-c",
        `while :; do mkdir ${vol} 2>/dev/null; rmdir ${vol} 2>/dev/null; ln -s /proc ${vol} 2>/dev/null; rm -f ${vol}; done`,
      ],
      { stdio: "ignore" },
    );
    let bound = 0;
    let refused = 0;
    try {
      for (let i = 0; i < 300; i++) {
        const relative = `c${i}/volumes/v`;
        try {
          await share.bindDir(vol, relative, false);
        } catch (e) {
          if (isKataError(e, Code.FailedPrecondition)) refused++;
          continue;
        }
        bound++;
        const types = await fsTypesUnder(path.join(share.paths.mounts, relative));
        assert.equal(types.includes("proc"), false, `attempt ${i} mounted the host's /proc`);
        await share.unbind(relative);
      }
    } finally {
      swapper.kill("SIGKILL");
    }
    assert.ok(refused > 0, `the race was never hit (bound ${bound}, refused ${refused}): the test proves nothing`);
    assert.deepEqual(mountsUnder(parseMountInfo(await readSelfMountInfo()), share.paths.mounts), [share.paths.mounts]);
  });

  it("CVE-2020-28914: a read-only volume cannot be written through either view of the share", async () => {
    const volume = path.join(run, "ro-volume");
    await mkdir(volume);
    await share.bindDir(volume, "c5/volumes/ro", true);

    for (const view of [share.paths.mounts, share.paths.shared]) {
      await assert.rejects(writeFile(path.join(view, "c5", "volumes", "ro", "x"), "x"), /EROFS/);
    }
    assert.deepEqual(await readdir(volume), []);
    await share.unbind("c5/volumes/ro");
  });

  it("refuses a bind source on the host's /proc or /sys, by its file system", async () => {
    for (const source of ["/proc", "/proc/sys", "/sys/kernel"]) {
      await assert.rejects(share.bindDir(source, "c1/volumes/sys", false), (e: unknown) => {
        assert.ok(isKataError(e, Code.FailedPrecondition), String(e));
        assert.match(e.message, /kernel file system/);
        return true;
      });
    }
    assert.deepEqual(await readdir(share.paths.mounts), []);
  });

  it("CVE-2020-2026: never binds through a symlink planted on the way to the target", async () => {
    const elsewhere = path.join(run, "elsewhere");
    await mkdir(elsewhere);
    await symlink(elsewhere, path.join(share.paths.mounts, "c2"));
    const rootfs = path.join(run, "rootfs2");
    await mkdir(rootfs);

    await assert.rejects(share.bindDir(rootfs, "c2/rootfs", false), /symlink: refusing to follow it/);

    assert.deepEqual(await readdir(elsewhere), []);
    await rm(path.join(share.paths.mounts, "c2"));
  });

  it("CVE-2020-2026: never makes a mount point inside another bind, where the guest writes", async () => {
    const volume = path.join(run, "guest-writable");
    await mkdir(volume);
    await share.bindDir(volume, "c3/volumes/data", false);
    // The guest made a directory in its volume, named like the rootfs a later container would get.
    await mkdir(path.join(volume, "rootfs"));
    const rootfs = path.join(run, "rootfs3");
    await mkdir(rootfs);
    await writeFile(path.join(rootfs, "marker"), "");

    await assert.rejects(share.bindDir(rootfs, "c3/volumes/data/rootfs", false), /enters another mount/);

    assert.deepEqual(await readdir(path.join(volume, "rootfs")), []);
    await share.unbind("c3/volumes/data");
  });

  it("refuses a source that is a symlink itself (the runtime binds what it resolved, nothing else)", async () => {
    const target = path.join(run, "real");
    await mkdir(target);
    const link = path.join(run, "link");
    await symlink(target, link);

    await assert.rejects(share.bindDir(link, "c4/volumes/l", false), /symlink: refusing to follow it/);
  });

  it("a batch (one helper run) makes its binds in order and stops at the first refused, reporting the ones made", async () => {
    const volume = path.join(run, "batch-volume");
    const rootfs = path.join(run, "batch-rootfs");
    const other = path.join(run, "batch-other");
    for (const d of [volume, rootfs, other]) await mkdir(d);
    await mkdir(path.join(volume, "rootfs"));
    await writeFile(path.join(other, "marker"), "");
    const bound: string[] = [];
    // The second would make its mount point inside the first, made by the same run: refused as across runs.
    await assert.rejects(
      share.bindAll(
        [
          { source: volume, relative: "c5/volumes/data", readonly: false, kind: "dir" },
          { source: rootfs, relative: "c5/volumes/data/rootfs", readonly: false, kind: "dir" },
          { source: other, relative: "c5/volumes/other", readonly: false, kind: "dir" },
        ],
        (relative) => bound.push(relative),
      ),
      (e) =>
        isKataError(e, Code.FailedPrecondition) && /c5\/volumes\/data\/rootfs: .*enters another mount/.test(e.message),
    );
    assert.deepEqual(bound, ["c5/volumes/data"]);
    assert.deepEqual(await readdir(path.join(volume, "rootfs")), []);
    assert.deepEqual(await fsTypesUnder(share.hostPath("c5/volumes/other")), []);
    await share.unbind("c5/volumes/data");

    await share.bindAll(
      [
        { source: other, relative: "c6/rootfs", readonly: false, kind: "dir" },
        { source: path.join(other, "marker"), relative: "c6/volumes/m", readonly: true, kind: "file" },
      ],
      (relative) => bound.push(relative),
    );
    assert.deepEqual(bound.slice(1), ["c6/rootfs", "c6/volumes/m"]);
    assert.deepEqual(await readdir(share.hostPath("c6/rootfs")), ["marker"]);
    assert.equal((await fsTypesUnder(share.hostPath("c6"))).length, 2);
    for (const r of bound.slice(1)) await share.unbind(r);
  });
});
