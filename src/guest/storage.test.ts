import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ignoreErrno, isKataError } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import type { Mounter, MountRequest } from "../platform/mount.js";
import { StorageSchema, type Storage } from "../protocol/gen/agent_pb.js";
import { StorageManager, guestStorageHandlers } from "./storage.js";

/** An in-memory mount table; mount fails for targets listed in `failOn`. */
class FakeMounter implements Mounter {
  readonly #table = new Map<string, MountRequest>();
  readonly failOn = new Set<string>();
  mountCalls = 0;

  mount(m: MountRequest): Promise<void> {
    this.mountCalls++;
    if (this.failOn.has(m.target)) return Promise.reject(new Error(`fake: mount ${m.target} failed`));
    if (this.#table.has(m.target)) return Promise.reject(new Error(`fake: ${m.target} already mounted`));
    this.#table.set(m.target, m);
    return Promise.resolve();
  }

  bind(source: string, target: string): Promise<void> {
    return this.mount({ source, target, options: ["bind"] });
  }

  remountReadonly(): Promise<void> {
    return Promise.resolve();
  }

  setPropagation(): Promise<void> {
    return Promise.resolve();
  }

  unmount(target: string): Promise<void> {
    if (!this.#table.delete(target)) return Promise.reject(new Error(`fake: ${target} not mounted`));
    return Promise.resolve();
  }

  get(target: string): MountRequest | undefined {
    return this.#table.get(target);
  }

  mounted(): string[] {
    return [...this.#table.keys()];
  }
}

const silent: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silent,
};

const volumeMp = "/run/kata-containers/sandbox/ephemeral/cache";
const localMp = "/run/kata-containers/shared/containers/sb1/rootfs/local/data";

function storage(init: Parameters<typeof create<typeof StorageSchema>>[1]): Storage {
  return create(StorageSchema, init);
}

const ephemeral = (options: string[] = [], shared = false): Storage =>
  storage({ driver: "ephemeral", source: "tmpfs", fstype: "tmpfs", options, mountPoint: volumeMp, shared });
const local = (options: string[] = ["mode=0777"], shared = false): Storage =>
  storage({ driver: "local", source: "local", fstype: "local", options, mountPoint: localMp, shared });

async function exists(p: string): Promise<boolean> {
  return (await stat(p).then(() => true, ignoreErrno("ENOENT"))) ?? false;
}

async function modeOf(p: string): Promise<number> {
  return (await stat(p)).mode & 0o7777;
}

describe("guest storages", () => {
  let root = "";
  let mounter = new FakeMounter();
  let manager = new StorageManager({ mounter, logger: silent }, guestStorageHandlers);
  const under = (p: string): string => path.join(root, p);

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), "kata-ts-storage-"));
    mounter = new FakeMounter();
    manager = new StorageManager({ mounter, logger: silent, fsRoot: root }, guestStorageHandlers);
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("registers the 9p, ephemeral and local drivers", () => {
    assert.deepEqual(
      guestStorageHandlers.map((h) => h.driver),
      ["9p", "ephemeral", "local"],
    );
  });

  it("mounts an ephemeral tmpfs once for two containers and removes it after the last release", async () => {
    const first = await manager.add([ephemeral(["size=65536k"])]);
    const second = await manager.add([ephemeral(["size=65536k"])]);

    assert.equal(mounter.mountCalls, 1);
    assert.deepEqual(mounter.get(under(volumeMp)), {
      source: "tmpfs",
      target: under(volumeMp),
      fstype: "tmpfs",
      options: ["size=65536k"],
    });
    assert.equal(manager.refs(volumeMp), 2);

    await manager.release(first);
    assert.deepEqual(mounter.mounted(), [under(volumeMp)]);

    await manager.release(second);
    assert.deepEqual(mounter.mounted(), []);
    assert.equal(await exists(under(volumeMp)), false);
  });

  it("keeps a shared pod volume after its containers until the sandbox goes", async () => {
    const first = await manager.add([ephemeral([], true), local(["mode=0777"], true)]);
    const second = await manager.add([ephemeral([], true), local(["mode=0777"], true)]);

    await manager.release(first);
    await manager.release(second);
    assert.deepEqual(mounter.mounted(), [under(volumeMp)]);
    assert.equal(await exists(under(localMp)), true);

    const again = await manager.add([ephemeral([], true)]);
    assert.equal(mounter.mountCalls, 1);
    assert.equal(manager.refs(volumeMp), 1);
    await manager.release(again);

    await manager.releaseAll();
    assert.deepEqual(mounter.mounted(), []);
    assert.equal(await exists(under(volumeMp)), false);
    assert.equal(await exists(under(localMp)), false);
  });

  it("mounts the sandbox shm with its options", async () => {
    const shm = storage({
      driver: "ephemeral",
      source: "shm",
      fstype: "tmpfs",
      options: ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
      mountPoint: "/run/kata-containers/sandbox/shm",
    });

    await manager.add([shm]);

    assert.deepEqual(mounter.get(under("/run/kata-containers/sandbox/shm")), {
      source: "shm",
      target: under("/run/kata-containers/sandbox/shm"),
      fstype: "tmpfs",
      options: ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
    });
  });

  it("mounts a hugetlbfs with its page size", async () => {
    const huge = storage({
      driver: "ephemeral",
      source: "nodev",
      fstype: "hugetlbfs",
      options: ["pagesize=2097152"],
      mountPoint: "/run/kata-containers/sandbox/ephemeral/huge",
    });

    await manager.add([huge]);

    assert.equal(mounter.get(under(huge.mountPoint))?.fstype, "hugetlbfs");
    assert.deepEqual(mounter.get(under(huge.mountPoint))?.options, ["pagesize=2097152"]);
  });

  it("refuses other filesystems and mount points outside the sandbox dir", async () => {
    const ext4 = storage({ driver: "ephemeral", source: "/dev/vdb", fstype: "ext4", mountPoint: volumeMp });
    const outside = storage({ driver: "ephemeral", source: "tmpfs", fstype: "tmpfs", mountPoint: "/etc/x" });
    const localOutside = storage({ driver: "local", source: "local", fstype: "local", mountPoint: "/tmp/x" });

    for (const s of [ext4, outside, localOutside]) {
      await assert.rejects(manager.add([s]), (e) => isKataError(e, Code.InvalidArgument));
    }
    assert.equal(mounter.mountCalls, 0);
  });

  it("creates a local directory with mode 0777 despite the umask", async () => {
    const before = process.umask(0o022);
    try {
      await manager.add([local()]);
    } finally {
      process.umask(before);
    }

    assert.equal(await modeOf(under(localMp)), 0o777);
    assert.equal(mounter.mountCalls, 0);
  });

  it("creates a local directory once for two containers and removes it after the last release", async () => {
    const first = await manager.add([local()]);
    const second = await manager.add([local()]);

    await manager.release(first);
    assert.equal(await exists(under(localMp)), true);

    await manager.release(second);
    assert.equal(await exists(under(localMp)), false);
  });

  it("rolls back the first storage when the second one fails", async () => {
    await assert.rejects(manager.add([ephemeral(), local(["mode=9z"])]), (e) => isKataError(e, Code.InvalidArgument));

    assert.deepEqual(mounter.mounted(), []);
    assert.equal(await exists(under(volumeMp)), false);
    assert.equal(manager.refs(volumeMp), 0);
  });

  it("rolls back only its own reference when a later mount fails", async () => {
    await manager.add([local()]);
    const other = storage({ driver: "ephemeral", source: "tmpfs", fstype: "tmpfs", mountPoint: volumeMp });
    mounter.failOn.add(under(volumeMp));

    await assert.rejects(manager.add([local(), other]), /attach ephemeral storage/);

    assert.equal(manager.refs(localMp), 1);
    assert.equal(await exists(under(localMp)), true);
    assert.equal(await exists(under(volumeMp)), false);
  });

  it("attaches one volume once when two containers are created concurrently", async () => {
    await Promise.all([manager.add([ephemeral()]), manager.add([ephemeral()])]);

    assert.equal(mounter.mountCalls, 1);
    assert.equal(manager.refs(volumeMp), 2);
  });

  it("refuses an invalid fsgid", async () => {
    await assert.rejects(manager.add([local(["fsgid=-1"])]), (e) => isKataError(e, Code.InvalidArgument));
  });
});
