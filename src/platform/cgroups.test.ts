import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isKataError } from "../base/errors.js";
import { detectLayout, dirOfCgroup } from "./cgroups.js";

/** This machine's layout: v1 controllers (cpu and cpuacct apart), name=systemd, and an empty cgroup2. */
const hybridMountInfo = [
  "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
  "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
  "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct",
  "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset",
  "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
  "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices",
  "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer",
  "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids",
  "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd",
  "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
].join("\n");
const hybridSelf = [
  "9:name=systemd:/",
  "8:pids:/",
  "6:freezer:/",
  "5:devices:/",
  "4:memory:/process_api/abc",
  "3:cpuset:/",
  "2:cpuacct:/",
  "1:cpu:/",
  "0::/",
].join("\n");

describe("detectLayout", () => {
  it("reads a hybrid host as v1, one hierarchy per mounted controller we use, with our own cgroup in each", () => {
    const l = detectLayout(hybridMountInfo, hybridSelf);

    assert.equal(l.version, 1);
    assert.deepEqual(
      l.hierarchies.map((h) => [h.controllers.join(","), h.mountPoint, h.ownPath]),
      [
        ["cpu", "/sys/fs/cgroup/cpu", "/"],
        ["cpuacct", "/sys/fs/cgroup/cpuacct", "/"],
        ["cpuset", "/sys/fs/cgroup/cpuset", "/"],
        ["memory", "/sys/fs/cgroup/memory", "/process_api/abc"],
        ["devices", "/sys/fs/cgroup/devices", "/"],
        ["pids", "/sys/fs/cgroup/pids", "/"],
      ],
    );
  });

  it("keys co-mounted controllers together (cpu,cpuacct)", () => {
    const l = detectLayout(
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
      "4:cpuacct,cpu:/user.slice\n",
    );

    assert.deepEqual(l.hierarchies, [
      {
        controllers: ["cpu", "cpuacct"],
        mountPoint: "/sys/fs/cgroup/cpu,cpuacct",
        mountRoot: "/",
        ownPath: "/user.slice",
      },
    ]);
  });

  it("reads a unified-only host as v2", () => {
    const l = detectLayout(
      "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
      "0::/system.slice/containerd.service\n",
    );

    assert.deepEqual(l, {
      version: 2,
      hierarchies: [
        { controllers: [], mountPoint: "/sys/fs/cgroup", mountRoot: "/", ownPath: "/system.slice/containerd.service" },
      ],
    });
  });

  it("keeps the root of a bind-mounted subtree", () => {
    const l = detectLayout("30 23 0:26 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/kubepods/pod1\n");

    const h = l.hierarchies[0];
    assert.equal(h.mountRoot, "/kubepods");
    assert.equal(dirOfCgroup(h, "/kubepods/pod1/x"), "/sys/fs/cgroup/pod1/x");
    assert.equal(dirOfCgroup(h, "/kubepods"), "/sys/fs/cgroup");
    assert.equal(dirOfCgroup(h, "/other"), undefined);
  });

  it("fails when no cgroup filesystem is mounted, or our cgroup is not listed", () => {
    assert.throws(
      () => detectLayout("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", "0::/\n"),
      (e) => isKataError(e, "FAILED_PRECONDITION") && e.message === "no cgroup filesystem is mounted",
    );
    assert.throws(
      () => detectLayout(hybridMountInfo, "0::/\n"),
      (e) => isKataError(e, "FAILED_PRECONDITION") && /no line for the cpu hierarchy/.test(e.message),
    );
  });
});
