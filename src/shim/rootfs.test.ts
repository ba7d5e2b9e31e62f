import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, KataError } from "../base/errors.js";
import { nullLogger } from "../base/log.js";
import { FakeMounter } from "../../test/helpers/fake-host.js";
import { kataError } from "../../test/helpers/fakes.js";
import { mountRootfs, planRootfsMounts, type ContainerdMount } from "./rootfs.js";

const overlay = (over: Partial<ContainerdMount> = {}): ContainerdMount => ({
  type: "overlay",
  source: "overlay",
  target: "",
  options: ["index=off", "workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs"],
  ...over,
});

describe("planRootfsMounts", () => {
  it("puts an overlay on <bundle>/rootfs with containerd's options", () => {
    const plan = planRootfsMounts("/run/b/c1", [overlay()]);

    assert.deepEqual(plan, [
      {
        source: "overlay",
        target: "/run/b/c1/rootfs",
        fstype: "overlay",
        options: ["index=off", "workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs"],
      },
    ]);
  });

  it("binds the native snapshotter's directory, adding bind only when rbind/bind is absent", () => {
    const plan = planRootfsMounts("/b", [
      { type: "bind", source: "/snap/1", target: "", options: ["rbind", "rw"] },
      { type: "bind", source: "/snap/2", target: "", options: ["ro"] },
    ]);

    assert.deepEqual(plan, [
      { source: "/snap/1", target: "/b/rootfs", options: ["rbind", "rw"] },
      { source: "/snap/2", target: "/b/rootfs", options: ["bind", "ro"] },
    ]);
  });

  it("refuses block-device and unknown types UNIMPLEMENTED, naming rootfs[i].type", () => {
    for (const type of ["ext4", "xfs", "tmpfs", ""]) {
      assert.throws(
        () => planRootfsMounts("/b", [overlay(), { type, source: "/dev/dm-3", target: "", options: [] }]),
        kataError(Code.Unimplemented, `rootfs[1].type: ${JSON.stringify(type)} is not supported`),
      );
    }
  });

  it("refuses bad fields INVALID_ARGUMENT, naming each", () => {
    const cases: [string, ContainerdMount[], string][] = [
      ["/b", [overlay({ target: "/x" })], 'rootfs[0].target: "/x": must be empty'],
      ["/b", [overlay({ options: ["upperdir=/u"] })], "rootfs[0].options: an overlay mount needs lowerdir="],
      ["/b", [overlay({ options: ["lowerdir=/a,upperdir=/b"] })], "rootfs[0].options[0]:"],
      [
        "/b",
        [{ type: "bind", source: "snap", target: "", options: [] }],
        'rootfs[0].source: "snap" is not an absolute',
      ],
      ["b", [overlay()], 'bundle: "b" is not an absolute path'],
    ];
    for (const [bundle, mounts, msg] of cases) {
      assert.throws(() => planRootfsMounts(bundle, mounts), kataError(Code.InvalidArgument, msg));
    }
  });
});

describe("mountRootfs (fake mounter)", () => {
  let dir: string;
  let mounter: FakeMounter;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "kata-ts-rootfs-"));
    mounter = new FakeMounter();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("makes the missing rootfs directory, mounts every layer, and unmount() takes them all off", async () => {
    const bundle = path.join(dir, "b");
    const target = path.join(bundle, "rootfs");

    const r = await mountRootfs({ mounter, logger: nullLogger }, bundle, [
      overlay(),
      { type: "bind", source: dir, target: "", options: ["ro"] },
    ]);
    const during = mounter.mounted();
    await r?.unmount();

    assert.ok((await stat(target)).isDirectory());
    assert.deepEqual(during, [target, target]);
    assert.equal(r?.target, target);
    assert.deepEqual(mounter.mounted(), []);
  });

  it("leaves nothing mounted when a later layer fails, and names that layer", async () => {
    const bundle = path.join(dir, "b");
    let n = 0;
    mounter.failOn = (op) =>
      op === "mount" && ++n === 2 ? new KataError(Code.FailedPrecondition, "denied") : undefined;

    const p = mountRootfs({ mounter, logger: nullLogger }, bundle, [overlay(), overlay()]);

    await assert.rejects(p, kataError(Code.FailedPrecondition, `rootfs[1]: mount overlay on ${bundle}/rootfs`));
    assert.deepEqual(mounter.mounted(), []);
  });

  it("does nothing for no mounts, and nothing before a refused one", async () => {
    assert.equal(await mountRootfs({ mounter, logger: nullLogger }, path.join(dir, "b"), []), undefined);
    await assert.rejects(
      mountRootfs({ mounter, logger: nullLogger }, path.join(dir, "c"), [overlay(), overlay({ type: "ext4" })]),
      kataError(Code.Unimplemented, "rootfs[1].type"),
    );
    assert.deepEqual(mounter.calls, []);
  });
});
