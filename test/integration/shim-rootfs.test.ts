// containerd's rootfs mounts on a bundle with the real mount(8)/umount(8) (root): an overlay as the
// overlayfs snapshotter gives it, a read-only bind as the native one can, and a failing overlay that
// leaves nothing mounted.

import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { errnoOf } from "../../src/base/errors.js";
import { nullLogger } from "../../src/base/log.js";
import { CommandMounter } from "../../src/platform/mount.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { mountRootfs } from "../../src/shim/rootfs.js";
import { requires } from "../helpers/requires.js";

const skip = requires("root");

async function mountedUnder(dir: string): Promise<string[]> {
  const text = await readFile("/proc/self/mounts", "utf8");
  return text
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((t) => t.startsWith(dir));
}

describe("containerd rootfs mounts (real mount)", { skip, timeout: 60_000 }, () => {
  // A test is its own composition root: it builds the real mounter.
  const deps = { mounter: new CommandMounter(new NodeProcessRunner()), logger: nullLogger };
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "kata-ts-shim-rootfs-"));
  });
  after(async () => {
    // Only if a test failed half way: take off whatever is still mounted before removing the directory.
    for (const t of (await mountedUnder(dir)).reverse()) await deps.mounter.unmount(t, { detach: true });
    await rm(dir, { recursive: true, force: true });
  });

  it("mounts an overlay snapshot on <bundle>/rootfs (lower visible, writes go up) and unmounts it", async () => {
    const lower = join(dir, "ov", "lower");
    const upper = join(dir, "ov", "upper");
    const work = join(dir, "ov", "work");
    const b = join(dir, "ov", "bundle");
    for (const d of [lower, upper, work]) await mkdir(d, { recursive: true });
    await writeFile(join(lower, "etc-release"), "busybox\n");

    const r = await mountRootfs(deps, b, [
      {
        type: "overlay",
        source: "overlay",
        target: "",
        options: ["index=off", `workdir=${work}`, `upperdir=${upper}`, `lowerdir=${lower}`],
      },
    ]);
    const seen = await readFile(join(b, "rootfs", "etc-release"), "utf8");
    await writeFile(join(b, "rootfs", "new"), "x");
    const during = await mountedUnder(dir);
    await r?.unmount();

    assert.equal(seen, "busybox\n");
    assert.equal(await readFile(join(upper, "new"), "utf8"), "x");
    assert.deepEqual(during, [join(b, "rootfs")]);
    assert.deepEqual(await mountedUnder(dir), []);
  });

  it("binds a read-only snapshot directory: readable, not writable", async () => {
    const snap = join(dir, "bind", "snap");
    const bundle = join(dir, "bind", "bundle");
    await mkdir(snap, { recursive: true });
    await writeFile(join(snap, "f"), "data");

    const r = await mountRootfs(deps, bundle, [{ type: "bind", source: snap, target: "", options: ["rbind", "ro"] }]);
    const read = await readFile(join(bundle, "rootfs", "f"), "utf8");
    const write = await writeFile(join(bundle, "rootfs", "g"), "x").then(
      () => "written",
      (e: unknown) => errnoOf(e),
    );
    await r?.unmount();

    assert.equal(read, "data");
    assert.equal(write, "EROFS");
    assert.deepEqual(await mountedUnder(dir), []);
  });

  it("fails an overlay whose lower directory does not exist, leaving nothing mounted", async () => {
    const bundle = join(dir, "bad", "bundle");
    const [upper, work] = [join(dir, "bad", "upper"), join(dir, "bad", "work")];
    await mkdir(upper, { recursive: true });
    await mkdir(work, { recursive: true });

    const p = mountRootfs(deps, bundle, [
      {
        type: "overlay",
        source: "overlay",
        target: "",
        options: [`workdir=${work}`, `upperdir=${upper}`, `lowerdir=${join(dir, "bad", "missing")}`],
      },
    ]);

    await assert.rejects(p, /rootfs\[0\]: mount overlay on/);
    assert.deepEqual(await mountedUnder(dir), []);
  });
});
