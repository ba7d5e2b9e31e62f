// The host share directory with real bind mounts on a host whose `/` is a private mount: binds made
// under mounts/ must appear in the read-only shared/ view, read-only volumes must be read-only there.

import assert from "node:assert/strict";
import { mkdtemp, mkdir, readFile, rm, writeFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { CommandMounter } from "../../src/platform/mount.js";
import { mountsUnder, parseMountInfo } from "../../src/platform/mountinfo.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { HelperShareBinder } from "../../src/platform/share-binder.js";
import { SharedDir, readSelfMountInfo, sharedDirPaths, type SharedDirDeps } from "../../src/storage/shared-dir.js";
import { repoRoot } from "../helpers/cli.js";
import { requires } from "../helpers/requires.js";

function shareDeps(): SharedDirDeps {
  const runner = new NodeProcessRunner();
  return {
    mounter: new CommandMounter(runner),
    readMountInfo: readSelfMountInfo,
    binder: new HelperShareBinder(runner, path.join(repoRoot, "dist", "native", "kata-ts-mount")),
  };
}

async function errnoOfWrite(file: string): Promise<string | undefined> {
  try {
    await writeFile(file, "x");
    return undefined;
  } catch (e) {
    // CAST: fs errors carry an errno code.
    return (e as NodeJS.ErrnoException).code;
  }
}

describe("SharedDir (real mounts, the kata-ts-mount helper)", { skip: requires("root") }, () => {
  it("shows later binds in the read-only view, keeps read-only volumes read-only, and leaves nothing", async () => {
    const run = await mkdtemp(path.join(tmpdir(), "kata-ts-share-"));
    const rootfs = path.join(run, "rootfs");
    const volume = path.join(run, "volume");
    await mkdir(rootfs);
    await mkdir(volume);
    await writeFile(path.join(rootfs, "hello"), "from host");
    const share = new SharedDir(shareDeps(), sharedDirPaths(path.join(run, "state"), "sb1"));
    try {
      await share.setup();
      await share.bindDir(rootfs, "c1/rootfs", false);
      await share.bindDir(volume, "c1/volumes/vol", true);

      const viewRootfs = path.join(share.paths.shared, "c1", "rootfs");
      assert.equal(await readFile(path.join(viewRootfs, "hello"), "utf8"), "from host");
      assert.equal(await errnoOfWrite(path.join(share.paths.shared, "planted")), "EROFS");
      assert.equal(await errnoOfWrite(path.join(viewRootfs, "written-by-guest")), undefined);
      assert.equal(await errnoOfWrite(path.join(share.paths.shared, "c1/volumes/vol", "x")), "EROFS");
      assert.equal(await errnoOfWrite(path.join(share.paths.mounts, "c1/volumes/vol", "x")), "EROFS");

      await share.unbind("c1/rootfs");
      await share.unbind("c1/volumes/vol");
      await share.teardown();

      assert.deepEqual(mountsUnder(parseMountInfo(await readSelfMountInfo()), run), []);
      assert.deepEqual(await readdir(path.join(run, "state", "shared", "sandboxes")), []);
      assert.equal(await readFile(path.join(rootfs, "hello"), "utf8"), "from host");
    } finally {
      await share.teardown();
      await rm(run, { recursive: true, force: true });
    }
  });

  it("binds files, read-only ones read-only in both views, and unbind removes the file", async () => {
    const run = await mkdtemp(path.join(tmpdir(), "kata-ts-share-"));
    const hosts = path.join(run, "hosts");
    const log = path.join(run, "termination-log");
    await writeFile(hosts, "127.0.0.1 localhost\n");
    await writeFile(log, "");
    const share = new SharedDir(shareDeps(), sharedDirPaths(path.join(run, "state"), "sb3"));
    try {
      await share.setup();
      await share.bindFile(hosts, "c3/volumes/aa-hosts", true);
      await share.bindFile(log, "c3/volumes/bb-termination-log", false);

      assert.equal(
        await readFile(path.join(share.paths.shared, "c3/volumes/aa-hosts"), "utf8"),
        "127.0.0.1 localhost\n",
      );
      assert.equal(await errnoOfWrite(path.join(share.paths.shared, "c3/volumes/aa-hosts")), "EROFS");
      assert.equal(await errnoOfWrite(path.join(share.paths.mounts, "c3/volumes/aa-hosts")), "EROFS");
      assert.equal(await errnoOfWrite(path.join(share.paths.shared, "c3/volumes/bb-termination-log")), undefined);
      assert.equal(await readFile(log, "utf8"), "x");

      await share.unbind("c3/volumes/aa-hosts");
      await share.unbind("c3/volumes/bb-termination-log");

      assert.deepEqual(await readdir(share.paths.mounts), []);
      assert.deepEqual(mountsUnder(parseMountInfo(await readSelfMountInfo()), share.paths.mounts), [
        share.paths.mounts,
      ]);
      assert.equal(await readFile(hosts, "utf8"), "127.0.0.1 localhost\n");
      await share.teardown();
      assert.deepEqual(mountsUnder(parseMountInfo(await readSelfMountInfo()), run), []);
    } finally {
      await share.teardown();
      await rm(run, { recursive: true, force: true });
    }
  });

  it("teardown unmounts leftovers before removing anything", async () => {
    const run = await mkdtemp(path.join(tmpdir(), "kata-ts-share-"));
    const rootfs = path.join(run, "rootfs");
    await mkdir(rootfs);
    await writeFile(path.join(rootfs, "precious"), "keep me");
    const share = new SharedDir(shareDeps(), sharedDirPaths(path.join(run, "state"), "sb2"));
    try {
      await share.setup();
      await share.bindDir(rootfs, "c2/rootfs", false);

      await share.teardown();

      assert.equal(await readFile(path.join(rootfs, "precious"), "utf8"), "keep me");
      assert.deepEqual(mountsUnder(parseMountInfo(await readSelfMountInfo()), run), []);
    } finally {
      await rm(run, { recursive: true, force: true });
    }
  });

  it("the helper's views: shared and a read-only slave keeping its flags; a failure part way leaves neither", async () => {
    const run = await mkdtemp(path.join(tmpdir(), "kata-ts-views-"));
    const runner = new NodeProcessRunner();
    const mounter = new CommandMounter(runner);
    const binder = new HelperShareBinder(runner, path.join(repoRoot, "dist", "native", "kata-ts-mount"));
    // A state directory on a nosuid,nodev file system, as /run is.
    await mounter.mount({ fstype: "tmpfs", source: "tmpfs", target: run, options: ["nosuid", "nodev", "size=1m"] });
    try {
      const [mounts, shared] = [path.join(run, "mounts"), path.join(run, "shared")];
      await mkdir(mounts);
      await mkdir(shared);
      await binder.makeViews(mounts, shared);
      const entries = parseMountInfo(await readSelfMountInfo());
      const entry = (p: string): { options: readonly string[]; propagation: readonly string[] } | undefined =>
        entries.find((e) => e.mountPoint === p);
      // The mount's own options come first (the superblock's follow them).
      assert.deepEqual(entry(mounts)?.options.slice(0, 3), ["rw", "nosuid", "nodev"]);
      assert.match(entry(mounts)?.propagation.join(" ") ?? "", /^shared:\d+$/);
      assert.deepEqual(entry(shared)?.options.slice(0, 3), ["ro", "nosuid", "nodev"], "read-only, flags kept");
      assert.match(entry(shared)?.propagation.join(" ") ?? "", /^master:\d+$/, "a slave of mounts/");
      assert.equal(await errnoOfWrite(path.join(shared, "x")), "EROFS");
      await mounter.unmount(shared);
      await mounter.unmount(mounts);

      await assert.rejects(binder.makeViews(mounts, path.join(run, "missing")), /missing: No such file or directory/);
      const left = mountsUnder(parseMountInfo(await readSelfMountInfo()), run).filter((m) => m !== run);
      assert.deepEqual(left, [], "nothing of a failed makeViews stays mounted");
    } finally {
      await mounter.unmount(run, { detach: true });
      await rm(run, { recursive: true, force: true });
    }
  });
});
