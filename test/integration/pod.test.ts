// A Kubernetes-shaped pod through the OCI CLI with containerd CRI annotations, on a real VM: a sandbox
// container and two app containers sharing a memory-backed and a disk-backed emptyDir, a read-only
// volume, a prestart hook in the pod's network namespace, exec, state, list, delete.

import assert from "node:assert/strict";
import { chown, mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { CommandMounter } from "../../src/platform/mount.js";
import { mountsUnder, parseMountInfo } from "../../src/platform/mountinfo.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import type { Spec } from "../../src/oci/spec.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { netnsName } from "../../src/network/netns.js";
import { runDirScope } from "../../src/sandbox/persist.js";
import { leftovers, makeRunRoot, removeRunRoot, runCli } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const mounter = new CommandMounter(runner);
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const vmTimeout = 240_000;
const cri = (type: "sandbox" | "container", sandboxId: string): Record<string, string> => ({
  "io.kubernetes.cri.container-type": type,
  "io.kubernetes.cri.sandbox-id": sandboxId,
});

describe("a pod through the OCI CLI (real VM)", { skip: requires("root", "qemu", "image", "netns") }, () => {
  let work = "";
  let root = "";
  let memVol = "";
  let diskVol = "";
  let roVol = "";
  const sid = `pod${process.pid}`;

  /** Runs the CLI with stdio to files (the container keeps the caller's stdout open, as with runc). */
  async function cli(args: string[], out?: string): Promise<{ code: number | null; stderr: string; stdout: string }> {
    if (out === undefined) {
      const r = await runCli(["--root", root, "--log", path.join(work, "kata.log"), ...args], {
        env,
        timeoutMs: vmTimeout,
      });
      return { code: r.code, stderr: r.stderr, stdout: r.stdout.toString() };
    }
    // A created container holds the caller's stdio: give it files, not the test's pipes.
    const fd = await open(out, "a");
    const errFile = `${out}.err`;
    const efd = await open(errFile, "a");
    try {
      const r = await runCli(["--root", root, "--log", path.join(work, "kata.log"), ...args], {
        env,
        timeoutMs: vmTimeout,
        stdoutFd: fd.fd,
        stderrFd: efd.fd,
      });
      return { code: r.code, stderr: await readFile(errFile, "utf8"), stdout: "" };
    } finally {
      await fd.close();
      await efd.close();
    }
  }

  async function bundle(name: string, script: string, edit: (s: Spec) => void): Promise<string> {
    return makeBusyboxBundle({ runner }, { dir: path.join(work, name), args: ["sh", "-c", script], edit });
  }

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-pod-"));
    root = await makeRunRoot();
    const volumes = path.join(work, "kubelet", "pods", "uid-1", "volumes", "kubernetes.io~empty-dir");
    memVol = path.join(volumes, "cache");
    diskVol = path.join(volumes, "data");
    roVol = path.join(work, "ro-data");
    await mkdir(memVol, { recursive: true });
    await mkdir(diskVol, { recursive: true });
    await mkdir(roVol);
    await writeFile(path.join(roVol, "config"), "read-only content\n");
    await mounter.mount({ source: "tmpfs", target: memVol, fstype: "tmpfs", options: ["size=16m"] });
    await chown(diskVol, 0, 2000);
  });

  after(async () => {
    await cli(["delete", "--force", sid]);
    // before() may have failed ahead of the mount: unmount only what is there, and let a failure show.
    const mounted = mountsUnder(parseMountInfo(await readFile("/proc/self/mountinfo", "utf8")), memVol);
    if (mounted.includes(memVol)) await mounter.unmount(memVol);
    await removeRunRoot(root);
    await rm(work, { recursive: true, force: true });
  });

  it("runs the pod, shares emptyDirs inside the VM, and cleans up", { timeout: vmTimeout }, async () => {
    const hookOut = path.join(work, "hook-netns");
    const podBundle = await bundle("pod", "echo pause-up; while true; do sleep 1; done", (s) => {
      s.annotations = cri("sandbox", sid);
      s.hooks = { prestart: [{ path: "/bin/sh", args: ["sh", "-c", `readlink /proc/self/ns/net > ${hookOut}`] }] };
    });
    const volumes = (s: Spec): void => {
      s.mounts = [
        ...(s.mounts ?? []),
        { destination: "/cache", type: "bind", source: memVol, options: ["rbind", "rw"] },
        { destination: "/data", type: "bind", source: diskVol, options: ["rbind", "rw"] },
        { destination: "/ro", type: "bind", source: roVol, options: ["rbind", "ro"] },
      ];
    };
    const a = await bundle(
      "a",
      [
        "echo from-a > /cache/a.txt",
        "echo from-a > /data/a.txt",
        "cat /ro/config",
        "(echo x > /ro/x) 2>/dev/null && echo ro-writable || echo ro-refused",
        "grep -E ' /(cache|data) ' /proc/mounts | cut -d' ' -f2,3",
        "stat -c 'data %a %g' /data",
      ].join("; "),
      (s) => {
        s.annotations = cri("container", sid);
        volumes(s);
      },
    );
    const b = await bundle("b", "cat /cache/a.txt /data/a.txt", (s) => {
      s.annotations = cri("container", sid);
      volumes(s);
    });
    const outPod = path.join(work, "pod.out");
    const outA = path.join(work, "a.out");
    const outB = path.join(work, "b.out");

    const created = await cli(["create", "--bundle", podBundle, "--pid-file", path.join(work, "pid"), sid], outPod);
    assert.equal(created.code, 0, created.stderr);
    assert.equal((await cli(["start", sid])).code, 0);
    const netnsIno = (await stat(`/var/run/netns/${netnsName(sid, runDirScope(root))}`)).ino;
    assert.equal((await readFile(hookOut, "utf8")).trim(), `net:[${netnsIno}]`);

    for (const [id, dir, out] of [
      ["ca", a, outA],
      ["cb", b, outB],
    ] as const) {
      const c = await cli(["create", "--bundle", dir, id], out);
      assert.equal(c.code, 0, c.stderr);
      assert.equal((await cli(["start", id])).code, 0);
      const w = await cli(["wait", id]);
      assert.match(w.stdout, /^0 /, `${id} exit: ${w.stdout} ${w.stderr}`);
    }

    const aOut = await readFile(outA, "utf8");
    assert.match(aOut, /read-only content/);
    assert.match(aOut, /ro-refused/);
    assert.match(aOut, /\/cache tmpfs/);
    assert.match(aOut, /data 2777 2000/);
    assert.equal(await readFile(outB, "utf8"), "from-a\nfrom-a\n");
    assert.deepEqual(await readdir(diskVol), []);
    assert.deepEqual(await readdir(memVol), []);
    assert.deepEqual(await readdir(roVol), ["config"]);

    const state = JSON.parse((await cli(["state", sid])).stdout) as {
      status: string;
      annotations?: Record<string, string>;
      pid: number;
    };
    assert.equal(state.status, "running");
    assert.equal(state.annotations?.["io.kubernetes.cri.container-type"], "sandbox");
    assert.equal(String(state.pid), (await readFile(path.join(work, "pid"), "utf8")).trim());
    const list = (await cli(["list", "-q"])).stdout
      .split("\n")
      .filter((l) => l !== "")
      .sort();
    assert.deepEqual(list, ["ca", "cb", sid].sort());
    const ex = await cli(["exec", sid, "--", "cat", "/proc/version"]);
    assert.equal(ex.code, 0, ex.stderr);
    assert.match(ex.stdout, /Linux version \d+\.\d+\.\d+-\d+-amd64/);

    assert.equal((await cli(["delete", "ca"])).code, 0);
    assert.equal((await cli(["delete", "cb"])).code, 0);
    const running = await cli(["delete", sid]);
    assert.notEqual(running.code, 0);
    assert.match(running.stderr, /is running: cannot delete it \(kill it first, or delete with --force\)/);
    assert.equal((await cli(["delete", "--force", sid])).code, 0, "delete --force");

    assert.deepEqual(await leftovers(root), []);
    assert.deepEqual(await readdir(path.join(root, "containers-mapping")), []);
    await assert.rejects(stat(`/var/run/netns/${netnsName(sid, runDirScope(root))}`));
  });
});
