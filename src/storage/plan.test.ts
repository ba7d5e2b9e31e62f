// One file on purpose (past the 400-line soft limit): every planner rule next to its fixture.
import path from "node:path";

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import type { Mount } from "../oci/spec.js";
import { parseProcMounts, type MountEntry } from "../platform/mountinfo.js";
import { guestShmDir } from "../protocol/guest-paths.js";
import { parseSizeBytes } from "./empty-dir.js";
import {
  planContainerStorage,
  planSandboxStorages,
  sourcesToInspect,
  type SourceInfo,
  type StoragePlanInput,
} from "./plan.js";

const pod = "/var/lib/kubelet/pods/3f1c/volumes/kubernetes.io~empty-dir";
const cri = ["rbind", "rprivate", "rw"];

const dir = (p: string, gid = 0): [string, SourceInfo] => [p, { kind: "dir", gid, realPath: p }];
const file = (p: string): [string, SourceInfo] => [p, { kind: "file", gid: 0, realPath: p }];

function bind(source: string, destination: string, options: string[] = cri): Mount {
  return { destination, type: "bind", source, options };
}

function input(over: Partial<StoragePlanInput> & Pick<StoragePlanInput, "mounts">): StoragePlanInput {
  return {
    sandboxId: "sb1",
    containerId: "c1",
    isSandboxContainer: false,
    procMounts: [],
    sources: new Map(),
    ...over,
  };
}

function procMounts(...lines: string[]): MountEntry[] {
  return parseProcMounts(lines.join("\n"));
}

/** The INVALID_ARGUMENT message of a plan that must fail. */
function planError(i: StoragePlanInput): string {
  try {
    planContainerStorage(i);
  } catch (e) {
    assert.ok(isKataError(e, Code.InvalidArgument), `expected INVALID_ARGUMENT, got ${String(e)}`);
    return e.message;
  }
  assert.fail("plan succeeded");
}

describe("planContainerStorage: emptyDir", () => {
  it("turns a tmpfs emptyDir into a shared ephemeral storage, keeping the host size", () => {
    const src = `${pod}/cache`;

    const plan = planContainerStorage(
      input({
        mounts: [bind(src, "/cache")],
        procMounts: procMounts(`tmpfs ${src} tmpfs rw,relatime,size=65536k,inode64 0 0`),
        sources: new Map([dir(src)]),
      }),
    );

    assert.deepEqual(plan.storages, [
      {
        driver: "ephemeral",
        source: "tmpfs",
        fstype: "tmpfs",
        options: ["size=65536k"],
        mountPoint: "/run/kata-containers/sandbox/ephemeral/cache",
        shared: true,
      },
    ]);
    assert.deepEqual(plan.mounts, [
      { destination: "/cache", type: "bind", source: "/run/kata-containers/sandbox/ephemeral/cache", options: cri },
    ]);
    assert.deepEqual(plan.binds, []);
  });

  it("turns a disk emptyDir into a local storage in the sandbox's rootfs", () => {
    const src = `${pod}/data`;

    const plan = planContainerStorage(input({ mounts: [bind(src, "/data")], sources: new Map([dir(src)]) }));

    const guestPath = "/run/kata-containers/shared/containers/sb1/rootfs/local/data";
    assert.deepEqual(plan.storages, [
      {
        driver: "local",
        source: "local",
        fstype: "local",
        options: ["mode=0777"],
        mountPoint: guestPath,
        shared: true,
      },
    ]);
    assert.deepEqual(plan.mounts, [{ destination: "/data", type: "bind", source: guestPath, options: cri }]);
    assert.deepEqual(plan.binds, []);
    assert.deepEqual(plan.dirs, [{ within: "sb1/rootfs", relative: "local/data", mode: 0o777 }]);
  });

  it("has the host make a disk emptyDir with the fsGroup setgid, which QEMU may not set for the guest", () => {
    const src = `${pod}/data`;

    const plan = planContainerStorage(input({ mounts: [bind(src, "/data")], sources: new Map([dir(src, 2000)]) }));

    assert.deepEqual(plan.dirs, [{ within: "sb1/rootfs", relative: "local/data", mode: 0o2777, gid: 2000 }]);
  });

  it("treats an emptyDir on another filesystem (ext4) as a disk volume", () => {
    const src = `${pod}/data`;

    const plan = planContainerStorage(
      input({
        mounts: [bind(src, "/data")],
        procMounts: procMounts(`/dev/sdb1 ${src} ext4 rw 0 0`),
        sources: new Map([dir(src)]),
      }),
    );

    assert.equal(plan.storages[0]?.driver, "local");
  });

  it("passes the fsGroup as fsgid when the host directory's group is not root", () => {
    const disk = `${pod}/data`;
    const mem = `${pod}/mem`;

    const plan = planContainerStorage(
      input({
        mounts: [bind(disk, "/data"), bind(mem, "/mem")],
        procMounts: procMounts(`tmpfs ${mem} tmpfs rw 0 0`),
        sources: new Map([dir(disk, 2000), dir(mem, 2000)]),
      }),
    );

    assert.deepEqual(
      plan.storages.map((s) => s.options),
      [["mode=0777", "fsgid=2000"], ["fsgid=2000"]],
    );
  });

  it("sends no fsgid for gid 0", () => {
    const src = `${pod}/data`;

    const plan = planContainerStorage(input({ mounts: [bind(src, "/data")], sources: new Map([dir(src, 0)]) }));

    assert.deepEqual(plan.storages[0]?.options, ["mode=0777"]);
  });

  it("turns a hugetlbfs emptyDir into an ephemeral hugetlbfs with the page size in bytes", () => {
    const src = `${pod}/huge`;

    const plan = planContainerStorage(
      input({
        mounts: [bind(src, "/huge")],
        procMounts: procMounts(`nodev ${src} hugetlbfs rw,relatime,pagesize=2M 0 0`),
        sources: new Map([dir(src)]),
      }),
    );

    assert.deepEqual(plan.storages, [
      {
        driver: "ephemeral",
        source: "nodev",
        fstype: "hugetlbfs",
        options: ["pagesize=2097152"],
        mountPoint: "/run/kata-containers/sandbox/ephemeral/huge",
        shared: true,
      },
    ]);
    assert.equal(plan.mounts[0]?.source, "/run/kata-containers/sandbox/ephemeral/huge");
  });

  it("refuses a hugetlbfs emptyDir without a page size", () => {
    const src = `${pod}/huge`;

    const msg = planError(
      input({
        mounts: [bind(src, "/huge")],
        procMounts: procMounts(`nodev ${src} hugetlbfs rw 0 0`),
        sources: new Map([dir(src)]),
      }),
    );

    assert.match(msg, /mounts\[0\]\.source .*huge: hugetlbfs mount .* has no pagesize option/);
  });

  it("classifies a volume with a space as tmpfs: /proc/mounts escapes it as \\040", () => {
    const src = `${pod}/my vol`;

    const plan = planContainerStorage(
      input({
        mounts: [bind(src, "/v")],
        procMounts: procMounts(`tmpfs ${pod}/my\\040vol tmpfs rw 0 0`),
        sources: new Map([dir(src)]),
      }),
    );

    assert.equal(plan.storages[0]?.driver, "ephemeral");
    assert.equal(plan.storages[0].mountPoint, "/run/kata-containers/sandbox/ephemeral/my vol");
  });

  it("detects an emptyDir source with a trailing slash", () => {
    const src = `${pod}/cache`;

    const plan = planContainerStorage(
      input({
        mounts: [bind(`${src}/`, "/cache")],
        procMounts: procMounts(`tmpfs ${src} tmpfs rw 0 0`),
        sources: new Map([dir(src)]),
      }),
    );

    assert.equal(plan.storages[0]?.mountPoint, "/run/kata-containers/sandbox/ephemeral/cache");
    assert.deepEqual(sourcesToInspect([bind(`${src}/`, "/cache")]), [src]);
  });

  it("uses the visible (last) mount when two are stacked on the volume", () => {
    const src = `${pod}/cache`;

    const plan = planContainerStorage(
      input({
        mounts: [bind(src, "/cache")],
        procMounts: procMounts(`/dev/sda1 ${src} ext4 rw 0 0`, `tmpfs ${src} tmpfs rw 0 0`),
        sources: new Map([dir(src)]),
      }),
    );

    assert.equal(plan.storages[0]?.driver, "ephemeral");
  });

  it("finds the tmpfs at the resolved path when /var/lib/kubelet is a symlink", () => {
    const src = `${pod}/cache`;
    const real = `/data/kubelet/pods/3f1c/volumes/kubernetes.io~empty-dir/cache`;

    const plan = planContainerStorage(
      input({
        mounts: [bind(src, "/cache")],
        procMounts: procMounts(`tmpfs ${real} tmpfs rw 0 0`),
        sources: new Map([[src, { kind: "dir", gid: 0, realPath: real }]]),
      }),
    );

    assert.equal(plan.storages[0]?.driver, "ephemeral");
  });

  it("does not rewrite the sandbox container's mounts: they are shared", () => {
    const src = `${pod}/data`;

    const plan = planContainerStorage(
      input({ isSandboxContainer: true, mounts: [bind(src, "/data")], sources: new Map([dir(src)]) }),
    );

    assert.deepEqual(plan.storages, []);
    assert.equal(plan.binds.length, 1);
    assert.equal(plan.binds[0]?.source, src);
  });

  it("sends one storage when a container mounts one volume twice", () => {
    const src = `${pod}/data`;

    const plan = planContainerStorage(
      input({ mounts: [bind(src, "/a"), bind(src, "/b")], sources: new Map([dir(src)]) }),
    );

    assert.equal(plan.storages.length, 1);
    assert.equal(plan.mounts.length, 2);
  });

  it("refuses an emptyDir that is a symlink", () => {
    const src = `${pod}/evil`;

    const msg = planError(
      input({ mounts: [bind(src, "/evil")], sources: new Map([[src, { kind: "symlink", gid: 0, realPath: "/etc" }]]) }),
    );

    assert.match(msg, /mounts\[0\]\.source \/var\/lib\/kubelet\/.*\/evil is a symlink to \/etc.*refusing/);
  });

  it("refuses an emptyDir that resolves out of its volume", () => {
    const src = `${pod}/evil`;

    const msg = planError(
      input({ mounts: [bind(src, "/evil")], sources: new Map([[src, { kind: "dir", gid: 0, realPath: "/etc" }]]) }),
    );

    assert.match(msg, /mounts\[0\]\.source .*evil resolves to \/etc, out of its volume: refusing/);
  });

  it("refuses invalid volume names", () => {
    const msg = planError(input({ mounts: [bind(`${pod}/..`, "/x")], sources: new Map([dir(`${pod}/..`)]) }));

    assert.match(msg, /mounts\[0\]\.source .*: invalid emptyDir volume name "\.\."/);
  });

  it("refuses a missing emptyDir", () => {
    const src = `${pod}/gone`;

    const msg = planError(
      input({ mounts: [bind(src, "/gone")], sources: new Map([[src, { kind: "missing", gid: 0, realPath: src }]]) }),
    );

    assert.match(msg, /mounts\[0\]\.source .*gone does not exist/);
  });
});

describe("planContainerStorage: other mounts", () => {
  it("passes guest-provided filesystems through", () => {
    const mounts: Mount[] = [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "mode=755"] },
      { destination: "/dev/pts", type: "devpts", source: "devpts" },
      { destination: "/dev/mqueue", type: "mqueue", source: "mqueue" },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["ro"] },
      { destination: "/sys/fs/cgroup", type: "cgroup2", source: "cgroup" },
    ];

    const plan = planContainerStorage(input({ mounts }));

    assert.deepEqual(plan.mounts, mounts);
    assert.deepEqual(plan.storages, []);
    assert.deepEqual(plan.binds, []);
  });

  it("drops binds whose source is under /proc or /sys (runtime#1591)", () => {
    const mounts = [bind("/proc/self/mounts", "/etc/mtab"), bind("/sys/kernel", "/k"), bind("/proc", "/hostproc")];

    const plan = planContainerStorage(input({ mounts }));

    assert.deepEqual(plan, { mounts: [], storages: [], binds: [], dirs: [] });
    assert.deepEqual(sourcesToInspect(mounts), []);
  });

  it("drops a bind whose symlink source resolves into /proc", () => {
    const plan = planContainerStorage(
      input({
        mounts: [bind("/etc/mtab", "/etc/mtab")],
        sources: new Map([
          ["/etc/mtab", { kind: "symlink", gid: 0, realPath: "/proc/1/mounts" }],
          file("/proc/1/mounts"),
        ]),
      }),
    );

    assert.deepEqual(plan.mounts, []);
  });

  it("rewrites CRI's /dev/shm bind to the sandbox's shm", () => {
    const m = bind("/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm", "/dev/shm", [
      "rbind",
      "ro",
      "nosuid",
      "nodev",
      "noexec",
    ]);

    const plan = planContainerStorage(input({ mounts: [m] }));

    assert.deepEqual(plan.mounts, [
      {
        destination: "/dev/shm",
        type: "bind",
        source: guestShmDir,
        options: ["rbind", "ro", "nosuid", "nodev", "noexec"],
      },
    ]);
    assert.deepEqual(plan.binds, []);
    assert.deepEqual(sourcesToInspect([m]), []);
  });

  it("shares a read-write directory bind over the share dir", () => {
    const plan = planContainerStorage(
      input({ mounts: [bind("/srv/www", "/usr/share/nginx/html")], sources: new Map([dir("/srv/www")]) }),
    );

    const [b] = plan.binds;
    assert.ok(b);
    assert.match(b.relative, /^c1\/volumes\/[0-9a-f]{16}-html$/);
    assert.deepEqual(b, { source: "/srv/www", relative: b.relative, readonly: false, kind: "dir" });
    assert.deepEqual(plan.mounts, [
      {
        destination: "/usr/share/nginx/html",
        type: "bind",
        source: `/run/kata-containers/shared/containers/${b.relative}`,
        options: cri,
      },
    ]);
  });

  it("shares a read-only file bind read-only and keeps ro in the guest", () => {
    const hosts = "/var/lib/kubelet/pods/3f1c/etc-hosts";

    const plan = planContainerStorage(
      input({ mounts: [bind(hosts, "/etc/hosts", ["rbind", "rprivate", "ro"])], sources: new Map([file(hosts)]) }),
    );

    assert.equal(plan.binds[0]?.kind, "file");
    assert.equal(plan.binds[0].readonly, true);
    assert.deepEqual(plan.mounts[0]?.options, ["rbind", "rprivate", "ro"]);
  });

  it("gives each destination of a container its own name, stable across plans", () => {
    const mounts = [bind("/srv/a", "/data"), bind("/srv/b", "/other/data")];
    const i = input({ mounts, sources: new Map([dir("/srv/a"), dir("/srv/b")]) });

    const first = planContainerStorage(i).binds.map((b) => b.relative);
    const again = planContainerStorage(i).binds.map((b) => b.relative);
    const other = planContainerStorage({ ...i, containerId: "c2" }).binds.map((b) => b.relative);

    assert.equal(new Set(first).size, 2);
    assert.deepEqual(again, first);
    assert.ok(other.every((r) => r.startsWith("c2/volumes/") && !first.includes(r)));
  });

  it("cuts a long destination basename so the shared name stays one path component (NAME_MAX)", () => {
    const cid = "c".repeat(200);
    const long = `/data/${"é".repeat(100)}`;
    const i = input({ containerId: cid, mounts: [bind("/srv/a", long)], sources: new Map([dir("/srv/a")]) });

    const [b] = planContainerStorage(i).binds;

    assert.ok(b);
    const name = path.posix.basename(b.relative);
    assert.ok(Buffer.byteLength(name) <= 255, `${Buffer.byteLength(name)} bytes`);
    assert.match(b.relative, new RegExp(`^${cid}/volumes/[0-9a-f]{16}-(é)+$`));
  });

  it("binds a symlink source's target, as the kernel would", () => {
    const plan = planContainerStorage(
      input({
        mounts: [bind("/srv/current", "/app")],
        sources: new Map([["/srv/current", { kind: "symlink", gid: 0, realPath: "/srv/v2" }], dir("/srv/v2")]),
      }),
    );

    assert.equal(plan.binds[0]?.source, "/srv/v2");
    assert.equal(plan.binds[0].kind, "dir");
  });

  it("treats type none with a bind option as a bind (docker)", () => {
    const plan = planContainerStorage(
      input({
        mounts: [{ destination: "/d", type: "none", source: "/srv/d", options: ["bind"] }],
        sources: new Map([dir("/srv/d")]),
      }),
    );

    assert.equal(plan.mounts[0]?.type, "bind");
    assert.deepEqual(plan.mounts[0].options, ["bind"]);
  });

  it("drops host device binds into /dev (the guest has its own)", () => {
    const plan = planContainerStorage(
      input({
        mounts: [bind("/dev/fuse", "/dev/fuse")],
        sources: new Map([["/dev/fuse", { kind: "other", gid: 0, realPath: "/dev/fuse" }]]),
      }),
    );

    assert.deepEqual(plan.mounts, []);
  });

  it("keeps a regular file bound into /dev (termination log)", () => {
    const log = "/var/lib/kubelet/pods/3f1c/containers/app/0a1b";

    const plan = planContainerStorage(
      input({ mounts: [bind(log, "/dev/termination-log")], sources: new Map([file(log)]) }),
    );

    assert.equal(plan.binds[0]?.kind, "file");
  });

  it("refuses sockets and devices outside /dev", () => {
    const sock = "/run/docker.sock";

    const msg = planError(
      input({
        mounts: [bind(sock, "/var/run/docker.sock")],
        sources: new Map([[sock, { kind: "other", gid: 0, realPath: sock }]]),
      }),
    );

    assert.match(msg, /mounts\[0\]\.source \/run\/docker\.sock is not a regular file or directory/);
  });

  it("refuses a missing bind source and a dangling symlink, naming both", () => {
    const msg = planError(
      input({
        mounts: [bind("/srv/gone", "/a"), bind("/srv/link", "/b")],
        sources: new Map([
          ["/srv/gone", { kind: "missing", gid: 0, realPath: "/srv/gone" }],
          ["/srv/link", { kind: "symlink", gid: 0, realPath: "" }],
        ]),
      }),
    );

    assert.match(msg, /mounts\[0\]\.source \/srv\/gone does not exist/);
    assert.match(msg, /mounts\[1\]\.source \/srv\/link is a dangling symlink/);
  });

  it("refuses relative destinations and .. elements", () => {
    const msg = planError(
      input({
        mounts: [
          { destination: "data", type: "tmpfs", source: "tmpfs" },
          { destination: "/a/../../etc", type: "tmpfs", source: "tmpfs" },
        ],
      }),
    );

    assert.match(msg, /mounts\[0\]\.destination "data" must be absolute/);
    assert.match(msg, /mounts\[1\]\.destination "\/a\/\.\.\/\.\.\/etc" must be absolute, without "\.\." elements/);
  });

  it("refuses relative bind sources and unsupported types", () => {
    const msg = planError(
      input({
        mounts: [bind("srv/x", "/x"), { destination: "/n", type: "nfs", source: "server:/export" }],
      }),
    );

    assert.match(msg, /mounts\[0\]\.source "srv\/x" must be an absolute host path/);
    assert.match(msg, /mounts\[1\] at \/n: type "nfs" is not supported/);
  });

  // Found by plan.fuzz.test.ts: the NUL reached the host bind's file name ("c1-<hash>-\0").
  it("refuses a NUL in a destination or a source, and does not ask to inspect such a source", () => {
    const mounts = [bind("/srv/a", "/\0"), bind("/srv/\0b", "/b")];

    const msg = planError(input({ mounts, sources: new Map([dir("/srv/a")]) }));

    assert.match(msg, /mounts\[0\]\.destination "\/\\u0000" must be absolute, without "\.\." elements or NUL/);
    assert.match(msg, /mounts\[1\]\.source "\/srv\/\\u0000b" must be an absolute host path without NUL/);
    assert.deepEqual(sourcesToInspect(mounts), ["/srv/a"]);
  });

  it("lists each source to inspect once", () => {
    const mounts = [
      bind("/srv/a", "/a"),
      bind("/srv/a/", "/b"),
      { destination: "/proc", type: "proc", source: "proc" },
    ];

    assert.deepEqual(sourcesToInspect(mounts), ["/srv/a"]);
  });
});

describe("planSandboxStorages", () => {
  it("mounts the share and a shm tmpfs of the configured size", () => {
    const storages = planSandboxStorages({ shmSizeBytes: 64 * 2 ** 20, msize9p: 8192 });

    assert.deepEqual(storages, [
      {
        driver: "9p",
        source: "kataShared",
        fstype: "9p",
        options: ["trans=virtio", "version=9p2000.L", "msize=8192", "cache=mmap", "nodev"],
        mountPoint: "/run/kata-containers/shared/containers",
      },
      {
        driver: "ephemeral",
        source: "shm",
        fstype: "tmpfs",
        options: ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
        mountPoint: "/run/kata-containers/sandbox/shm",
      },
    ]);
  });

  it("refuses a zero shm size", () => {
    assert.throws(
      () => planSandboxStorages({ shmSizeBytes: 0, msize9p: 8192 }),
      (e) => isKataError(e, Code.InvalidArgument),
    );
  });
});

describe("parseSizeBytes", () => {
  it("reads kernel and Kubernetes size suffixes", () => {
    assert.equal(parseSizeBytes("2M"), 2 * 2 ** 20);
    assert.equal(parseSizeBytes("1G"), 2 ** 30);
    assert.equal(parseSizeBytes("2048k"), 2 * 2 ** 20);
    assert.equal(parseSizeBytes("2Mi"), 2 * 2 ** 20);
    assert.equal(parseSizeBytes("2MiB"), 2 * 2 ** 20);
    assert.equal(parseSizeBytes("4096"), 4096);
    assert.equal(parseSizeBytes("x"), undefined);
  });

  // Found by empty-dir.fuzz.test.ts: 10000 * 2^40 is past 2^53 and became an inexact float.
  it("refuses a size past Number's exact integers", () => {
    assert.equal(parseSizeBytes("8191T"), 8191 * 2 ** 40);
    assert.equal(parseSizeBytes("10000TiB"), undefined);
    assert.equal(parseSizeBytes("9".repeat(400)), undefined);
  });
});
