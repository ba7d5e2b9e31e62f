import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isKataError } from "../base/errors.js";
import type { CgroupLayout } from "../platform/cgroups.js";
import { checkCgroupResources, parseCgroupsPath, planPodCgroup } from "./pod-cgroup-plan.js";

const v1: CgroupLayout = {
  version: 1,
  hierarchies: [
    { controllers: ["cpu", "cpuacct"], mountPoint: "/sys/fs/cgroup/cpu,cpuacct", mountRoot: "/", ownPath: "/" },
    { controllers: ["cpuset"], mountPoint: "/sys/fs/cgroup/cpuset", mountRoot: "/", ownPath: "/" },
    { controllers: ["memory"], mountPoint: "/sys/fs/cgroup/memory", mountRoot: "/", ownPath: "/user/me" },
    { controllers: ["pids"], mountPoint: "/sys/fs/cgroup/pids", mountRoot: "/", ownPath: "/" },
  ],
};
const v2: CgroupLayout = {
  version: 2,
  hierarchies: [{ controllers: [], mountPoint: "/sys/fs/cgroup", mountRoot: "/", ownPath: "/system.slice/x.service" }],
};

function refused(raw: string, problem: RegExp): void {
  assert.throws(
    () => parseCgroupsPath(raw, "sb1"),
    (e) => isKataError(e, "INVALID_ARGUMENT") && e.message.startsWith("linux.cgroupsPath: ") && problem.test(e.message),
    raw,
  );
}

describe("parseCgroupsPath", () => {
  it("takes an absolute cgroupfs path, cleaned of empty components", () => {
    assert.deepEqual(parseCgroupsPath("/kubepods//besteffort/pod1/", "sb1"), {
      form: "cgroupfs",
      path: "/kubepods/besteffort/pod1",
      relative: false,
    });
  });

  it("takes a relative path as relative (to our own cgroup, as runc's fs driver does)", () => {
    assert.deepEqual(parseCgroupsPath("a/b", "sb1"), { form: "cgroupfs", path: "a/b", relative: true });
  });

  it("expands runc's systemd form as runc's systemd driver names it", () => {
    assert.deepEqual(parseCgroupsPath("kubepods-besteffort-pod123.slice:cri-containerd:abcd", "sb1"), {
      form: "systemd",
      path: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod123.slice/cri-containerd-abcd.scope",
      relative: false,
    });
    assert.equal(parseCgroupsPath(":docker:abc", "sb1").path, "/system.slice/docker-abc.scope");
    assert.equal(parseCgroupsPath("-.slice:p:n", "sb1").path, "/p-n.scope");
    assert.equal(parseCgroupsPath("a.slice:ignored:b.slice", "sb1").path, "/a.slice/b.slice");
  });

  it("gives a sandbox without one a cgroup of its own at /kata_<id>", () => {
    assert.deepEqual(parseCgroupsPath(undefined, "sb1"), { form: "default", path: "/kata_sb1", relative: false });
    assert.deepEqual(parseCgroupsPath("", "sb1").path, "/kata_sb1");
    // Under a non-default --root the root's scope is in the name: one id under two roots, two cgroups.
    assert.equal(parseCgroupsPath(undefined, "sb1", "0a1b2c3d").path, "/kata_0a1b2c3d_sb1");
    assert.equal(parseCgroupsPath("/pod/x", "sb1", "0a1b2c3d").path, "/pod/x");
  });

  it("refuses .., ., NUL, over-long paths and names, the root, and malformed systemd forms, naming the field", () => {
    refused("/a/../b", /must not contain a "\.\." component/);
    refused("../b", /"\.\."/);
    refused("/a/./b", /"\." component/);
    refused("/a\0b", /NUL/);
    refused(`/${"a".repeat(256)}`, /component longer than 255 bytes/);
    refused(`/${"a/".repeat(2049)}`, /longer than 4096 bytes/);
    refused("/", /names no cgroup of its own/);
    refused("//", /names no cgroup of its own/);
    refused("a--b.slice:p:n", /empty component/);
    refused("x.slice:p:", /empty name/);
    refused("x.slice:p/q:n", /prefix "p\/q" must not contain "\/"/);
    refused("x.slice:p:../b", /name "\.\.\/b" must not contain "\/"/);
    refused("../x.slice:p:n", /slice "\.\.\/x\.slice" must not contain "\/"/);
  });
});

describe("planPodCgroup", () => {
  it("on v1: one leaf per hierarchy, every directory from the mount down, cpuset copied, writes per controller", () => {
    const plan = planPodCgroup(v1, parseCgroupsPath("/kubepods/pod1/sb", "sb"), {
      memory: { limit: 1 << 30 },
      cpu: { shares: 512, quota: 50000, period: 100000, cpus: "0-1" },
      pids: { limit: 100 },
    });

    assert.equal(plan.version, 1);
    const [cpu, cpuset, memory, pids] = plan.hierarchies;
    assert.deepEqual(memory?.dirs, [
      "/sys/fs/cgroup/memory/kubepods",
      "/sys/fs/cgroup/memory/kubepods/pod1",
      "/sys/fs/cgroup/memory/kubepods/pod1/sb",
    ]);
    assert.equal(memory.home, "/sys/fs/cgroup/memory/user/me");
    assert.deepEqual(
      cpu?.writes.map((w) => [w.file, w.value]),
      [
        ["cpu.shares", "512"],
        ["cpu.cfs_period_us", "100000"],
        ["cpu.cfs_quota_us", "50000"],
      ],
    );
    assert.deepEqual(cpuset?.writes, [{ file: "cpuset.cpus", value: "0-1", field: "linux.resources.cpu.cpus" }]);
    assert.deepEqual([cpuset.copyCpuset, cpu.copyCpuset], [true, false]);
    assert.deepEqual(memory.writes, [
      { file: "memory.limit_in_bytes", value: String(1 << 30), field: "linux.resources.memory.limit" },
    ]);
    assert.deepEqual(pids?.writes, [{ file: "pids.max", value: "100", field: "linux.resources.pids.limit" }]);
    assert.ok(plan.hierarchies.every((h) => h.enable.length === 0));
  });

  it("on v1: a relative path goes below our own cgroup in each hierarchy", () => {
    const plan = planPodCgroup(v1, parseCgroupsPath("pod1", "sb"), undefined);

    assert.deepEqual(
      plan.hierarchies.map((h) => h.dirs[h.dirs.length - 1]),
      [
        "/sys/fs/cgroup/cpu,cpuacct/pod1",
        "/sys/fs/cgroup/cpuset/pod1",
        "/sys/fs/cgroup/memory/user/me/pod1",
        "/sys/fs/cgroup/pids/pod1",
      ],
    );
    assert.ok(plan.hierarchies.every((h) => h.writes.length === 0));
  });

  it("on v2: one hierarchy, controllers to enable, runc's fs2 values", () => {
    const plan = planPodCgroup(v2, parseCgroupsPath("/kubepods.slice/x.scope", "sb"), {
      memory: { limit: -1 },
      cpu: { shares: 1024, quota: -1, period: 50000 },
      pids: { limit: -1 },
    });

    assert.equal(plan.version, 2);
    const [h] = plan.hierarchies;
    assert.deepEqual(h?.dirs, ["/sys/fs/cgroup/kubepods.slice", "/sys/fs/cgroup/kubepods.slice/x.scope"]);
    assert.equal(h.home, "/sys/fs/cgroup/system.slice/x.service");
    assert.deepEqual(h.enable, ["cpu", "cpuset", "memory", "pids"]);
    assert.equal(h.copyCpuset, false);
    assert.deepEqual(
      h.writes.map((w) => [w.file, w.value]),
      [
        ["memory.max", "max"],
        ["cpu.weight", "39"],
        ["cpu.max", "max 50000"],
        ["pids.max", "max"],
      ],
    );
  });

  it("refuses a cgroup outside the mounted part of the hierarchy", () => {
    const nested: CgroupLayout = {
      version: 2,
      hierarchies: [{ controllers: [], mountPoint: "/sys/fs/cgroup", mountRoot: "/kubepods", ownPath: "/kubepods/a" }],
    };

    assert.throws(
      () => planPodCgroup(nested, parseCgroupsPath("/elsewhere", "sb"), undefined),
      (e) => isKataError(e, "INVALID_ARGUMENT") && /^linux\.cgroupsPath: "\/elsewhere" is outside/.test(e.message),
    );
  });

  it("refuses resource values out of range, naming the field", () => {
    const cases: [Parameters<typeof checkCgroupResources>[0], RegExp][] = [
      [{ memory: { limit: -5 } }, /^linux\.resources\.memory\.limit: /],
      [{ cpu: { quota: 10 } }, /^linux\.resources\.cpu\.quota: out of range/],
      [{ cpu: { period: 1.5 } }, /^linux\.resources\.cpu\.period: /],
      [{ cpu: { cpus: "0-1;rm" } }, /^linux\.resources\.cpu\.cpus: not a list/],
      [{ pids: { limit: 0.5 } }, /^linux\.resources\.pids\.limit: /],
    ];
    for (const [r, message] of cases) {
      assert.throws(
        () => {
          checkCgroupResources(r);
        },
        (e) => isKataError(e, "INVALID_ARGUMENT") && message.test(e.message),
      );
    }
    assert.doesNotThrow(() => {
      checkCgroupResources({ memory: { limit: 0 }, pids: { limit: 0 } });
    });
  });
});
