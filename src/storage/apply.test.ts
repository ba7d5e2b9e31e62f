import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { CleanupStack } from "../base/cleanup.js";
import type { Mounter } from "../platform/mount.js";
import { bindEach, type ShareBind, type ShareBinder } from "../platform/share-binder.js";
import { applyHostBinds, inspectSources } from "./apply.js";
import { SharedDir, sharedDirPaths } from "./shared-dir.js";

/** Records binds as an in-memory table; `failOn` targets refuse to mount. */
const unusedMounter: Mounter = {
  mount: () => Promise.reject(new Error("unexpected mount")),
  bind: () => Promise.reject(new Error("unexpected bind")),
  remountReadonly: () => Promise.reject(new Error("unexpected remount")),
  setPropagation: () => Promise.reject(new Error("unexpected propagation change")),
  unmount: () => Promise.reject(new Error("unexpected unmount")),
};

/** Records what would be bound where, and fails a bind whose relative path is listed. */
class RecordingBinder implements ShareBinder {
  readonly bound = new Map<string, ShareBind>();
  readonly failOn = new Set<string>();

  bind(b: ShareBind): Promise<void> {
    if (this.failOn.has(b.relative)) return Promise.reject(new Error(`injected: bind ${b.relative}`));
    this.bound.set(b.relative, b);
    return Promise.resolve();
  }

  bindAll(binds: readonly ShareBind[], onBound: (b: ShareBind) => void): Promise<void> {
    return bindEach(this, binds, onBound);
  }

  unbind(_root: string, relative: string): Promise<void> {
    this.bound.delete(relative);
    return Promise.resolve();
  }

  makeDir(): Promise<void> {
    return Promise.reject(new Error("unexpected makeDir"));
  }

  makeViews(): Promise<void> {
    return Promise.reject(new Error("unexpected makeViews"));
  }
}

describe("inspectSources", () => {
  let dir = "";

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-inspect-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reports each entry's own kind, its real path, and a symlink's target", async () => {
    const vol = path.join(dir, "vol");
    const f = path.join(dir, "file");
    await mkdir(vol);
    await writeFile(f, "x");
    await symlink(vol, path.join(dir, "link"));
    await symlink(path.join(dir, "nowhere"), path.join(dir, "dangling"));
    execFileSync("mkfifo", [path.join(dir, "fifo")]);
    const gid = (await stat(vol)).gid;

    const got = await inspectSources(
      ["vol", "file", "link", "dangling", "missing", "fifo", "file/below"].map((n) => path.join(dir, n)),
    );

    assert.deepEqual(Object.fromEntries([...got].map(([p, i]) => [path.relative(dir, p), i])), {
      vol: { kind: "dir", gid, realPath: vol },
      file: { kind: "file", gid, realPath: f },
      link: { kind: "symlink", gid, realPath: vol },
      dangling: { kind: "symlink", gid, realPath: "" },
      missing: { kind: "missing", gid: 0, realPath: path.join(dir, "missing") },
      fifo: { kind: "other", gid, realPath: path.join(dir, "fifo") },
      "file/below": { kind: "missing", gid: 0, realPath: path.join(dir, "file/below") },
    });
  });
});

describe("applyHostBinds", () => {
  let binder = new RecordingBinder();
  let share = new SharedDir(
    { mounter: unusedMounter, readMountInfo: () => Promise.resolve(""), binder },
    sharedDirPaths("/nonexistent", "sb1"),
  );

  beforeEach(() => {
    binder = new RecordingBinder();
    share = new SharedDir(
      { mounter: unusedMounter, readMountInfo: () => Promise.resolve(""), binder },
      sharedDirPaths("/run/x", "sb1"),
    );
  });

  it("binds directories and files below mounts/, read-only ones read-only, and undoes them", async () => {
    const undo = new CleanupStack();

    await applyHostBinds(
      share,
      [
        { source: "/srv/www", relative: "c1/volumes/0011223344556677-html", readonly: false, kind: "dir" },
        { source: "/etc/hosts", relative: "c1/volumes/8899aabbccddeeff-hosts", readonly: true, kind: "file" },
      ],
      undo,
    );

    assert.deepEqual(
      [...binder.bound.values()].map((b) => [b.source, b.root, b.relative, b.kind, b.readonly]),
      [
        ["/srv/www", share.paths.mounts, "c1/volumes/0011223344556677-html", "dir", false],
        ["/etc/hosts", share.paths.mounts, "c1/volumes/8899aabbccddeeff-hosts", "file", true],
      ],
    );
    await undo.close("unshare");
    assert.deepEqual([...binder.bound.keys()], []);
  });

  it("names the bind that failed and leaves the earlier ones to the caller's undo", async () => {
    const undo = new CleanupStack();
    binder.failOn.add("c1/volumes/2-b");

    await assert.rejects(
      applyHostBinds(
        share,
        [
          { source: "/srv/a", relative: "c1/volumes/1-a", readonly: false, kind: "dir" },
          { source: "/srv/b", relative: "c1/volumes/2-b", readonly: false, kind: "file" },
        ],
        undo,
      ),
      /share \/srv\/b with the guest as c1\/volumes\/2-b/,
    );
    assert.equal(undo.size, 1);

    await undo.close("unshare");
    assert.deepEqual([...binder.bound.keys()], []);
  });
});
