// The agent's storage handlers giving a volume its fsGroup: chown to another group needs root. Mounts
// stay fake (a recorded table); the directories and their owners are real, under a temp guest root.

import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { nullLogger } from "../../src/base/log.js";
import { StorageManager, guestStorageHandlers } from "../../src/guest/storage.js";
import { StorageSchema } from "../../src/protocol/gen/agent_pb.js";
import { FakeMounter } from "../helpers/fake-host.js";
import { requires } from "../helpers/requires.js";

/** Kata's MODE_SETGID: files created in the volume inherit its group. */
const modeSetgid = 0o2000;
const volumeMp = "/run/kata-containers/sandbox/ephemeral/cache";
const localMp = "/run/kata-containers/shared/containers/sb1/rootfs/local/data";

describe("guest storages with an fsGroup (real chown)", { skip: requires("root") }, () => {
  let root = "";
  let mounter = new FakeMounter();
  let manager = new StorageManager({ mounter, logger: nullLogger }, guestStorageHandlers);
  const under = (p: string): string => path.join(root, p);

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), "kata-ts-storage-"));
    mounter = new FakeMounter();
    manager = new StorageManager({ mounter, logger: nullLogger, fsRoot: root }, guestStorageHandlers);
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("gives a local volume the fsGroup with the setgid bit", async () => {
    const local = create(StorageSchema, {
      driver: "local",
      source: "local",
      fstype: "local",
      options: ["mode=0777", "fsgid=2000"],
      mountPoint: localMp,
    });

    await manager.add([local]);

    const st = await stat(under(localMp));
    assert.equal(st.gid, 2000);
    assert.equal(st.mode & 0o7777, 0o2777);
  });

  it("gives an ephemeral volume the fsGroup, without passing fsgid to mount", async () => {
    const ephemeral = create(StorageSchema, {
      driver: "ephemeral",
      source: "tmpfs",
      fstype: "tmpfs",
      options: ["size=1m", "fsgid=2000"],
      mountPoint: volumeMp,
    });

    await manager.add([ephemeral]);

    assert.deepEqual(mounter.mounts().find((m) => m.target === under(volumeMp))?.options, ["size=1m"]);
    const st = await stat(under(volumeMp));
    assert.equal(st.gid, 2000);
    assert.equal(st.mode & modeSetgid, modeSetgid);
  });
});
