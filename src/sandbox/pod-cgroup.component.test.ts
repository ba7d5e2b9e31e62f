// PodCgroup against a fake cgroup filesystem (an in-memory tree): what is made, written, joined, left
// and removed, and that a failure at any step leaves nothing. The real thing is tested in
// test/integration/pod-cgroup.test.ts.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, describeError, isKataError } from "../base/errors.js";
import { Harness, criAnnotations } from "../../test/helpers/harness.js";
import { Pod } from "./pod.js";
import { cleanupStale } from "./stale.js";
import { FakeCgroupFs, v1Fs, v2MountInfo } from "../../test/helpers/fake-cgroups.js";
import { PodCgroup, removeStaleCgroup, type PersistedCgroup } from "./pod-cgroup.js";
import { parseCgroupsPath } from "./pod-cgroup-plan.js";

async function create(
  fs: FakeCgroupFs,
  raw: string,
  undo = new CleanupStack(),
  onMade: (c: PodCgroup) => Promise<void> = async () => {},
) {
  return PodCgroup.create(
    fs,
    { target: parseCgroupsPath(raw, "sb"), resources: { memory: { limit: 1 << 30 } }, pid: 100 },
    undo,
    onMade,
  );
}

describe("PodCgroup", () => {
  it("on v1: makes what is missing, copies cpuset, writes the limit, saves, then joins; leave undoes exactly that", async () => {
    const fs = v1Fs();
    let procsWhenSaved: string | undefined = "unset";
    const undo = new CleanupStack();

    const cg = await create(fs, "/kubepods/pod1", undo, (c) => {
      procsWhenSaved = fs.files.get("/cg/memory/kubepods/pod1/cgroup.procs");
      assert.deepEqual(c.persisted().created, [
        "/cg/cpu/kubepods",
        "/cg/cpu/kubepods/pod1",
        "/cg/cpuset/kubepods",
        "/cg/cpuset/kubepods/pod1",
        "/cg/memory/kubepods/pod1",
      ]);
      return Promise.resolve();
    });
    await cg.addProcess(200);

    assert.equal(procsWhenSaved, undefined, "the state is saved before the service joins");
    assert.equal(fs.files.get("/cg/cpuset/kubepods/pod1/cpuset.cpus"), "0-3");
    assert.equal(fs.files.get("/cg/cpuset/kubepods/pod1/cpuset.mems"), "0");
    assert.equal(fs.files.get("/cg/memory/kubepods/pod1/memory.limit_in_bytes"), String(1 << 30));
    assert.ok(fs.log.includes("write /cg/memory/kubepods/pod1/cgroup.procs 100"));
    assert.ok(fs.log.includes("write /cg/cpu/kubepods/pod1/cgroup.procs 200"));
    assert.deepEqual(cg.persisted(), {
      version: 1,
      leaves: ["/cg/cpu/kubepods/pod1", "/cg/cpuset/kubepods/pod1", "/cg/memory/kubepods/pod1"],
      created: [
        "/cg/cpu/kubepods",
        "/cg/cpu/kubepods/pod1",
        "/cg/cpuset/kubepods",
        "/cg/cpuset/kubepods/pod1",
        "/cg/memory/kubepods/pod1",
      ],
      homes: ["/cg/cpu", "/cg/cpuset", "/cg/memory/home"],
    });

    undo.release();
    fs.log.length = 0;
    fs.busy.set("/cg/memory/kubepods/pod1", 3);
    await cg.leave();
    await cg.leave();

    assert.deepEqual(fs.log, [
      "write /cg/cpu/cgroup.procs 100",
      "write /cg/cpuset/cgroup.procs 100",
      "write /cg/memory/home/cgroup.procs 100",
      "rmdir /cg/memory/kubepods/pod1",
      "rmdir /cg/cpuset/kubepods/pod1",
      "rmdir /cg/cpuset/kubepods",
      "rmdir /cg/cpu/kubepods/pod1",
      "rmdir /cg/cpu/kubepods",
    ]);
    assert.ok(fs.dirs.has("/cg/memory/kubepods"), "a directory it did not make stays");
  });

  it("undoes everything when a write fails, naming the field, and leaves the caller's stack untouched", async () => {
    const fs = v1Fs();
    fs.failWrite.set("/cg/memory/kubepods/pod1/memory.limit_in_bytes", "EINVAL");
    const undo = new CleanupStack();
    const before = new Set(fs.dirs);

    await assert.rejects(
      create(fs, "/kubepods/pod1", undo),
      (e) =>
        isKataError(e, "INVALID_ARGUMENT") &&
        e.message.startsWith("linux.resources.memory.limit: set memory.limit_in_bytes"),
    );

    assert.deepEqual(fs.dirs, before);
    assert.equal(undo.size, 0);
    assert.ok(!fs.log.some((l) => l.includes("cgroup.procs")));
  });

  it("moves the service back out when joining a later hierarchy fails", async () => {
    const fs = v1Fs();
    fs.failWrite.set("/cg/memory/kubepods/pod1/cgroup.procs", "EACCES");
    const before = new Set(fs.dirs);

    await assert.rejects(create(fs, "/kubepods/pod1"), /move process 100 into \/cg\/memory\/kubepods\/pod1/);

    assert.deepEqual(fs.dirs, before);
    assert.equal(fs.files.get("/cg/cpu/cgroup.procs"), "100");
    assert.equal(fs.files.get("/cg/cpuset/cgroup.procs"), "100");
  });

  it("refuses a directory on another device (something mounted over the path), leaving nothing", async () => {
    const fs = v1Fs();
    fs.otherDevice.add("/cg/memory/kubepods");
    const before = new Set(fs.dirs);

    await assert.rejects(
      create(fs, "/kubepods/pod1"),
      (e) =>
        isKataError(e, "FAILED_PRECONDITION") &&
        e.message === "/cg/memory/kubepods is not in the cgroup mount /cg/memory",
    );

    assert.deepEqual(fs.dirs, before);
  });

  it("on v2: enables the controllers the host has in each ancestor, not in the leaf", async () => {
    const fs = new FakeCgroupFs(v2MountInfo, "0::/init\n", ["/cg", "/cg/init"]);
    fs.files.set("/cg/cgroup.controllers", "cpuset cpu io memory pids\n");
    fs.files.set("/cg/cgroup.subtree_control", "memory\n");
    fs.failWrite.set("/cg/a/b/cgroup.subtree_control", "EPERM");
    // What the kernel would show in a new child: what its parent enabled.
    const origMkdir = fs.mkdir.bind(fs);
    fs.mkdir = async (dir) => {
      const made = await origMkdir(dir);
      fs.files.set(`${dir}/cgroup.controllers`, "cpuset cpu memory pids\n");
      fs.files.set(`${dir}/cgroup.subtree_control`, "\n");
      return made;
    };

    const cg = await create(fs, "/a/b");

    assert.ok(fs.log.includes("write /cg/cgroup.subtree_control +cpu +cpuset +pids"));
    assert.ok(fs.log.includes("write /cg/a/cgroup.subtree_control +cpu +cpuset +memory +pids"));
    assert.equal(fs.files.get("/cg/a/b/memory.max"), String(1 << 30));
    assert.equal(fs.files.get("/cg/a/b/cgroup.procs"), "100");

    await cg.leave();

    assert.equal(fs.files.get("/cg/init/cgroup.procs"), "100");
    assert.deepEqual([...fs.dirs].sort(), ["/cg", "/cg/init"]);
  });

  it("goes back to the nearest ancestor of its old cgroup when that one is gone", async () => {
    const fs = v1Fs();
    const cg = await create(fs, "/pod1");
    fs.dirs.delete("/cg/memory/home");

    await cg.leave();

    assert.equal(fs.files.get("/cg/memory/cgroup.procs"), "100");
  });

  it("reports a cgroup that stays busy, after trying the others", async () => {
    const fs = v1Fs();
    const cg = await create(fs, "/pod1");
    fs.busy.set("/cg/cpu/pod1", 1000);

    await assert.rejects(cg.leave(), (e) => isKataError(e) && /remove cgroup \/cg\/cpu\/pod1/.test(describeError(e)));

    assert.ok(!fs.dirs.has("/cg/memory/pod1") && !fs.dirs.has("/cg/cpuset/pod1"));
  });
});

describe("removeStaleCgroup", () => {
  it("removes the directories the state names, deepest first, skipping those gone, refusing non-cgroups", async () => {
    const fs = v1Fs();
    for (const d of ["/cg/memory/kubepods/pod1", "/cg/cpu/x", "/cg/cpu/x/y"]) fs.dirs.add(d);
    fs.notCgroup.add("/cg/cpu/x");
    const saved: PersistedCgroup = {
      version: 1,
      leaves: ["/cg/memory/kubepods/pod1"],
      created: ["/cg/cpu/x", "/cg/cpu/x/y", "/cg/memory/kubepods/pod1", "/cg/memory/gone"],
      homes: ["/cg/memory"],
    };

    await assert.rejects(removeStaleCgroup(fs, saved), (e) => /\/cg\/cpu\/x is not a cgroup/.test(describeError(e)));

    assert.ok(!fs.dirs.has("/cg/memory/kubepods/pod1") && !fs.dirs.has("/cg/cpu/x/y"));
    assert.ok(fs.dirs.has("/cg/cpu/x") && fs.dirs.has("/cg/memory/kubepods"));
  });
});

describe("a Pod with a cgroup port (fake VM, real agent)", { timeout: 20_000 }, () => {
  let h: Harness;
  const signal = new AbortController().signal;
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  async function sandboxBundle(cgroupsPath: string): Promise<string> {
    return h.bundle("sb1", {
      args: ["sleep", "inf"],
      annotations: criAnnotations("sandbox", "sb1"),
      edit: (s) => {
        s.linux = { ...s.linux, cgroupsPath };
      },
    });
  }

  it("joins the service, then QEMU, saves the cgroup in the state, and removes it at delete", async () => {
    const fs = v1Fs();
    const pod = new Pod({ ...h.podDeps(), cgroups: fs }, h.podOptions("sb1"));
    const servicePid = String(h.servicePid("sb1"));

    await pod.create(
      { id: "sb1", bundle: await sandboxBundle("/kubepods/pod1"), stdio: (await h.stdio("sb1")).paths },
      signal,
    );

    const vmPid = String(h.hypervisor.vm.pid);
    const joins = fs.log.filter((l) => l.startsWith("write /cg/memory/kubepods/pod1/cgroup.procs"));
    assert.deepEqual(joins, [
      `write /cg/memory/kubepods/pod1/cgroup.procs ${servicePid}`,
      `write /cg/memory/kubepods/pod1/cgroup.procs ${vmPid}`,
    ]);
    const saved = await h.store.load("sb1");
    assert.deepEqual(saved?.cgroup?.leaves, [
      "/cg/cpu/kubepods/pod1",
      "/cg/cpuset/kubepods/pod1",
      "/cg/memory/kubepods/pod1",
    ]);

    await pod.delete("sb1", "", signal, { force: true });

    assert.equal(fs.files.get("/cg/memory/home/cgroup.procs"), servicePid);
    assert.ok(!fs.dirs.has("/cg/memory/kubepods/pod1") && !fs.dirs.has("/cg/cpu/kubepods"));
    assert.ok(fs.dirs.has("/cg/memory/kubepods"));
    assert.deepEqual(await h.leaks(), []);
  });

  it("refuses a bad cgroupsPath before anything is made, naming the field", async () => {
    const fs = v1Fs();
    const pod = new Pod({ ...h.podDeps(), cgroups: fs }, h.podOptions("sb1"));

    await assert.rejects(
      pod.create(
        { id: "sb1", bundle: await sandboxBundle("/kubepods/../../etc"), stdio: (await h.stdio("sb1")).paths },
        signal,
      ),
      (e) =>
        isKataError(e, "INVALID_ARGUMENT") &&
        /linux\.cgroupsPath: must not contain a "\.\." component/.test(describeError(e)),
    );

    assert.deepEqual(fs.log, []);
    assert.equal(h.hypervisor.configs.length, 0);
    assert.deepEqual(await h.leaks(), []);
  });

  it("leaves the cgroup and removes it when the VM fails to start", async () => {
    const fs = v1Fs();
    const before = new Set(fs.dirs);
    h.hypervisor.startFault({ kind: "fail", error: new KataError(Code.Internal, "qemu exploded") });
    const pod = new Pod({ ...h.podDeps(), cgroups: fs }, h.podOptions("sb1"));

    await assert.rejects(
      pod.create(
        { id: "sb1", bundle: await sandboxBundle("/kubepods/pod1"), stdio: (await h.stdio("sb1")).paths },
        signal,
      ),
      (e) => /qemu exploded/.test(describeError(e)),
    );

    assert.deepEqual(fs.dirs, before);
    assert.equal(fs.files.get("/cg/memory/home/cgroup.procs"), String(h.servicePid("sb1")));
    assert.deepEqual(await h.leaks(), []);
  });

  it("stale cleanup removes the cgroup a dead service's state names", async () => {
    const fs = v1Fs();
    const pod = new Pod({ ...h.podDeps(), cgroups: fs }, h.podOptions("sb1"));
    await pod.create(
      { id: "sb1", bundle: await sandboxBundle("/kubepods/pod1"), stdio: (await h.stdio("sb1")).paths },
      signal,
    );
    h.hypervisor.vm.exit();
    await pod.wait("sb1", "");

    await cleanupStale({ ...h.staleDeps(), cgroups: fs }, "sb1", "sb1");

    assert.ok(
      !fs.dirs.has("/cg/memory/kubepods/pod1") &&
        !fs.dirs.has("/cg/cpu/kubepods") &&
        !fs.dirs.has("/cg/cpuset/kubepods"),
    );
    assert.ok(fs.dirs.has("/cg/memory/kubepods"));
    assert.equal(await h.store.load("sb1"), undefined);
  });
});
