import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { CleanupStack } from "../base/cleanup.js";
import { ignoreErrno } from "../base/errors.js";
import type { Mounter, MountRequest } from "../platform/mount.js";
import { applyHostBinds, inspectSources } from "./apply.js";
import { SharedDir, sharedDirPaths } from "./shared-dir.js";

/** Records binds as an in-memory table; `failOn` targets refuse to mount. */
class FakeMounter implements Mounter {
  readonly #table = new Map<string, string>();
  readonly failOn = new Set<string>();
  readonly readonlyTargets: string[] = [];

  mount(m: MountRequest): Promise<void> {
    return this.bind(m.source, m.target);
  }

  bind(source: string, target: string): Promise<void> {
    if (this.failOn.has(target)) return Promise.reject(new Error(`fake: bind ${target} failed`));
    this.#table.set(target, source);
    return Promise.resolve();
  }

  remountReadonly(target: string): Promise<void> {
    this.readonlyTargets.push(target);
    return Promise.resolve();
  }

  setPropagation(): Promise<void> {
    return Promise.resolve();
  }

  unmount(target: string): Promise<void> {
    this.#table.delete(target);
    return Promise.resolve();
  }

  table(): Record<string, string> {
    return Object.fromEntries(this.#table);
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
  let run = "";
  let mounter = new FakeMounter();
  let share = new SharedDir(
    { mounter, readMountInfo: () => Promise.resolve("") },
    sharedDirPaths("/nonexistent", "sb"),
  );

  beforeEach(async () => {
    run = await mkdtemp(path.join(tmpdir(), "kata-ts-apply-"));
    mounter = new FakeMounter();
    share = new SharedDir({ mounter, readMountInfo: () => Promise.resolve("") }, sharedDirPaths(run, "sb1"));
    await mkdir(share.paths.mounts, { recursive: true });
  });

  afterEach(async () => {
    await rm(run, { recursive: true, force: true });
  });

  it("binds directories and files under mounts/, read-only ones on both copies, and undoes them", async () => {
    const undo = new CleanupStack();

    await applyHostBinds(
      share,
      [
        { source: "/srv/www", relative: "c1-0011223344556677-html", readonly: false, kind: "dir" },
        { source: "/etc/hosts", relative: "c1-8899aabbccddeeff-hosts", readonly: true, kind: "file" },
      ],
      undo,
    );

    const www = path.join(share.paths.mounts, "c1-0011223344556677-html");
    const hosts = path.join(share.paths.mounts, "c1-8899aabbccddeeff-hosts");
    assert.deepEqual(mounter.table(), { [www]: "/srv/www", [hosts]: "/etc/hosts" });
    assert.ok((await stat(www)).isDirectory());
    assert.ok((await stat(hosts)).isFile());
    assert.deepEqual(mounter.readonlyTargets, [hosts, path.join(share.paths.shared, "c1-8899aabbccddeeff-hosts")]);

    await undo.close("unshare");

    assert.deepEqual(mounter.table(), {});
    assert.deepEqual(
      await Promise.all(
        [www, hosts].map(async (p) => (await stat(p).then(() => true, ignoreErrno("ENOENT"))) ?? false),
      ),
      [false, false],
    );
  });

  it("names the bind that failed and leaves the earlier ones to the caller's undo", async () => {
    const undo = new CleanupStack();
    const second = path.join(share.paths.mounts, "c1-2-b");
    mounter.failOn.add(second);

    await assert.rejects(
      applyHostBinds(
        share,
        [
          { source: "/srv/a", relative: "c1-1-a", readonly: false, kind: "dir" },
          { source: "/srv/b", relative: "c1-2-b", readonly: false, kind: "file" },
        ],
        undo,
      ),
      /share \/srv\/b with the guest as c1-2-b/,
    );
    assert.equal(undo.size, 1);
    await assert.rejects(stat(second));

    await undo.close("unshare");
    assert.deepEqual(mounter.table(), {});
  });
});
