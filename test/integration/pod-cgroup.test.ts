// The sandbox's host cgroup (sandbox_cgroup_only) on real VMs through the OCI CLI: QEMU and the
// per-sandbox service are in the sandbox's linux.cgroupsPath in the memory, cpu and pids hierarchies,
// the VM's memory is charged there, the sandbox container's own limits are not put on it, a systemd-style path works, a bad
// path is refused naming the field, and after delete (also after the service was SIGKILLed and
// `delete --force`) no directory and no process remains.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, rmdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { delay } from "../../src/base/async.js";
import { ignoreErrno } from "../../src/base/errors.js";
import type { Spec } from "../../src/oci/spec.js";
import { parseMountInfo } from "../../src/platform/mountinfo.js";
import { NodeProcessRunner, processExists } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCliToFiles } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const vmTimeout = 240_000;
const top = `/kata-ts-test-${process.pid}`;
const systemdSlice = `katatstest${process.pid}`;
const memoryLimit = 3 * 1024 * 1024 * 1024;

interface CgroupMount {
  readonly mountPoint: string;
  /** v1: the controllers of the hierarchy; v2: "unified". */
  readonly controllers: readonly string[];
}

async function cgroupMounts(): Promise<CgroupMount[]> {
  const out: CgroupMount[] = [];
  for (const m of parseMountInfo(await readFile("/proc/self/mountinfo", "utf8"))) {
    if (m.fstype === "cgroup") out.push({ mountPoint: m.mountPoint, controllers: m.options });
    if (m.fstype === "cgroup2") out.push({ mountPoint: m.mountPoint, controllers: ["unified"] });
  }
  return out;
}

const isV1 = async (): Promise<boolean> => (await cgroupMounts()).some((m) => m.controllers.includes("memory"));

/** Controller (v1) or "" (v2) → cgroup path, from /proc/<pid>/cgroup. */
async function cgroupsOf(pid: number): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const line of (await readFile(`/proc/${pid}/cgroup`, "utf8")).split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m === null) continue;
    for (const c of (m[1] ?? "").split(",")) out.set(c, m[2] ?? "");
  }
  return out;
}

/** The directory of cgroup `cg` in the hierarchy of `controller` (v1) or the unified one (v2). */
async function dirOf(controller: string, cg: string): Promise<string> {
  const mounts = await cgroupMounts();
  const m = (await isV1())
    ? mounts.find((x) => x.controllers.includes(controller))
    : mounts.find((x) => x.controllers.includes("unified"));
  assert.ok(m !== undefined, `no ${controller} hierarchy`);
  return path.join(m.mountPoint, cg);
}

/** Directories named `name` at the top of any cgroup hierarchy. */
async function topDirsLeft(name: string): Promise<string[]> {
  const left: string[] = [];
  for (const m of await cgroupMounts()) {
    const d = path.join(m.mountPoint, name);
    if ((await stat(d).catch(ignoreErrno("ENOENT"))) !== undefined) left.push(d);
  }
  return left;
}

async function statePids(root: string, sid: string): Promise<{ servicePid: number; vmPid: number }> {
  const s = JSON.parse(await readFile(path.join(root, "sbs", sid, "state.json"), "utf8")) as {
    servicePid: number;
    vmPid: number;
  };
  assert.ok(Number.isInteger(s.servicePid) && Number.isInteger(s.vmPid), JSON.stringify(s));
  return s;
}

/** A field of /proc/<pid>/status in bytes (VmRSS, RssAnon). */
async function statusBytes(pid: number, key: string): Promise<number> {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(await readFile(`/proc/${pid}/status`, "utf8"));
  assert.ok(m !== null, `${key} of ${pid}`);
  return Number(m[1]) * 1024;
}

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && processExists(pid); i++) await delay(50);
  return !processExists(pid);
}

describe("the sandbox's host cgroup (real VM)", { skip: requires("root", "qemu", "image", "netns") }, () => {
  let work = "";
  let n = 0;
  const roots: string[] = [];
  /** Sandbox id → its --root (one per test, so one test's leftovers do not fail the next). */
  const ids = new Map<string, string>();

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-cgroup-"));
  });

  after(async () => {
    for (const [id, root] of ids) await cli(root, ["delete", "--force", id]);
    // A failed test must not leave the host's cgroups littered: rmdir (never recursive) what is left.
    for (const name of [top, `${systemdSlice}.slice`]) {
      for (const d of await topDirsLeft(name)) {
        for (const sub of [
          "pod1/x",
          "pod1",
          "pod4",
          `${systemdSlice}-pod2.slice/cri-containerd-cg2${process.pid}.scope`,
          `${systemdSlice}-pod2.slice`,
          "",
        ]) {
          await rmdir(path.join(d, sub)).catch(ignoreErrno("ENOENT", "EBUSY", "ENOTEMPTY"));
        }
      }
    }
    await rm(work, { recursive: true, force: true });
    for (const root of roots) await removeRunRoot(root);
  });

  const cli = (root: string, verb: string[], timeoutMs = vmTimeout) =>
    runCliToFiles(["--root", root, "--log", path.join(work, "kata.log"), ...verb], work, { env, timeoutMs });

  async function create(id: string, edit: (s: Spec) => void) {
    const root = await makeRunRoot();
    roots.push(root);
    ids.set(id, root);
    const bundle = await makeBusyboxBundle(
      { runner },
      { dir: path.join(work, `b${++n}`), args: ["sh", "-c", "while true; do sleep 1; done"], edit },
    );
    return { root, created: await cli(root, ["create", "--bundle", bundle, id]) };
  }

  it("puts QEMU and the service in linux.cgroupsPath, charges the VM's memory there, and removes it at delete", async () => {
    const id = `cg1${process.pid}`;
    const cg = `${top}/pod1`;
    const { root, created } = await create(id, (s) => {
      s.linux = { ...s.linux, cgroupsPath: cg, resources: { memory: { limit: memoryLimit }, pids: { limit: 500 } } };
    });
    assert.equal(created.code, 0, created.stderr);
    const { servicePid, vmPid } = await statePids(root, id);

    for (const pid of [vmPid, servicePid]) {
      const cgs = await cgroupsOf(pid);
      for (const c of (await isV1()) ? ["memory", "cpu", "pids", "cpuacct", "cpuset"] : [""]) {
        assert.equal(cgs.get(c), cg, `process ${pid}, ${c || "unified"} hierarchy`);
      }
    }
    const v1 = await isV1();
    const memDir = await dirOf("memory", cg);
    // QEMU's memory first: it only grows while the guest runs, so the cgroup's, read after, holds it all.
    const rss = await statusBytes(vmPid, "VmRSS");
    const anon = await statusBytes(vmPid, "RssAnon");
    const usage = Number(await readFile(path.join(memDir, v1 ? "memory.usage_in_bytes" : "memory.current"), "utf8"));
    process.stdout.write(`# cgroup memory usage ${usage} bytes; qemu VmRSS ${rss}, RssAnon ${anon}\n`);
    assert.ok(usage > 100 * 1024 * 1024, `usage ${usage}`);
    // The VM's anonymous memory (guest RAM) is charged here; RSS also counts shared file pages (QEMU's
    // binary and libraries, the initrd) that were charged to whoever read them first.
    assert.ok(usage >= anon, `usage ${usage} vs qemu RssAnon ${anon}`);
    // The container's own limits stay in the guest: on the host they would hold QEMU to them.
    const limit = (await readFile(path.join(memDir, v1 ? "memory.limit_in_bytes" : "memory.max"), "utf8")).trim();
    assert.notEqual(limit, String(memoryLimit), "the sandbox container's memory limit is not the VM's");
    assert.equal((await readFile(path.join(await dirOf("pids", cg), "pids.max"), "utf8")).trim(), "max");

    assert.equal((await cli(root, ["start", id])).code, 0);
    const del = await cli(root, ["delete", "--force", id]);

    assert.equal(del.code, 0, del.stderr);
    assert.ok(await gone(vmPid), "QEMU must be gone");
    assert.ok(await gone(servicePid), "the service must be gone");
    assert.deepEqual(await topDirsLeft(top), []);
    assert.deepEqual(await leftovers(root), []);
  });

  it("expands a systemd-style cgroupsPath as runc's systemd driver names it", async () => {
    const id = `cg2${process.pid}`;
    const { root, created } = await create(id, (s) => {
      s.linux = { ...s.linux, cgroupsPath: `${systemdSlice}-pod2.slice:cri-containerd:${id}` };
    });
    assert.equal(created.code, 0, created.stderr);
    const { vmPid } = await statePids(root, id);

    const cgs = await cgroupsOf(vmPid);

    const expected = `/${systemdSlice}.slice/${systemdSlice}-pod2.slice/cri-containerd-${id}.scope`;
    assert.equal(cgs.get((await isV1()) ? "memory" : ""), expected);
    const del = await cli(root, ["delete", "--force", id]);
    assert.equal(del.code, 0, del.stderr);
    assert.ok(await gone(vmPid));
    assert.deepEqual(await topDirsLeft(`${systemdSlice}.slice`), []);
    assert.deepEqual(await leftovers(root), []);
  });

  it("refuses a cgroupsPath with '..' naming the field, leaving nothing", async () => {
    const id = `cg3${process.pid}`;

    const { root, created } = await create(id, (s) => {
      s.linux = { ...s.linux, cgroupsPath: `${top}/../escape${process.pid}` };
    });

    assert.notEqual(created.code, 0);
    assert.match(created.stderr, /linux\.cgroupsPath: must not contain a "\.\." component/);
    assert.deepEqual(await topDirsLeft(top), []);
    assert.deepEqual(await topDirsLeft(`escape${process.pid}`), []);
    assert.deepEqual(await leftovers(root), []);
    assert.deepEqual(await netnsLeft([id]), []);
  });

  it("removes the cgroup with delete --force after the service was SIGKILLed", async () => {
    const id = `cg4${process.pid}`;
    const { root, created } = await create(id, (s) => {
      s.linux = { ...s.linux, cgroupsPath: `${top}/pod4` };
    });
    assert.equal(created.code, 0, created.stderr);
    const { servicePid, vmPid } = await statePids(root, id);
    assert.ok((await topDirsLeft(top)).includes(path.dirname(await dirOf("memory", `${top}/pod4`))));

    process.kill(servicePid, "SIGKILL");
    assert.ok(await gone(servicePid));
    const del = await cli(root, ["delete", "--force", id]);

    assert.equal(del.code, 0, del.stderr);
    assert.ok(await gone(vmPid), "QEMU must be gone");
    assert.deepEqual(await topDirsLeft(top), []);
    assert.deepEqual(await leftovers(root), []);
  });
});
