// The kubelet's flow without a kubelet: CRI calls (runtime.v1) to the real containerd 1.6 CRI plugin
// with runtime handler kata-ts and a CNI bridge network. A pod of two containers sharing a memory- and a
// disk-backed emptyDir at the kubelet's paths, a non-root user with the fsGroup, ExecSync, the pod IP
// reached from the host, ContainerStats, then the teardown and a leak check. Each pod is one real VM.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { chmod, chown, mkdir, readFile, readdir, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { ignoreErrno } from "../../src/base/errors.js";
import { mountsUnder, parseMountInfo } from "../../src/platform/mountinfo.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { ContainerState, PodSandboxState } from "../../src/protocol/gen/k8s/cri/v1/api_pb.js";
import { CriClient } from "../../src/tools/cri-client.js";
import {
  emptyDirHostPath,
  kubeletContainerConfig,
  kubeletSandboxConfig,
  type KubeContainer,
  type KubePod,
} from "../../src/tools/cri-pod.js";
import { isServiceArgv, leftovers } from "../helpers/cli.js";
import {
  kataHandler,
  runcHandler,
  startContainerd,
  testImageName,
  type TestContainerd,
} from "../helpers/containerd.js";
import { requires } from "../helpers/requires.js";
import { eventually, vmTimeoutMs } from "../helpers/vm-world.js";

const runner = new NodeProcessRunner();
const cgroupParent = `/kata-ts-test-${process.pid}`;
/** pid 1 ignores SIGTERM without a handler: trap it so that StopContainer ends it at once. */
const untilTerm = "trap 'exit 0' TERM; sleep 2147483647 & wait";

async function processArgs(): Promise<{ pid: number; argv: string[] }[]> {
  const out: { pid: number; argv: string[] }[] = [];
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const t = await readFile(`/proc/${e}/cmdline`, "utf8").catch(ignoreErrno("ENOENT", "ESRCH"));
    if (t !== undefined) out.push({ pid: Number(e), argv: t.split("\0").filter((a) => a !== "") });
  }
  return out;
}

/** The cgroup of `pid` in the v1 hierarchy holding `controller` (or the v2 one). */
async function cgroupOf(pid: number, controller: string): Promise<string> {
  for (const line of (await readFile(`/proc/${pid}/cgroup`, "utf8")).split("\n")) {
    const [, controllers, cg] = line.split(":");
    if (controllers !== undefined && controllers.split(",").includes(controller)) return cg ?? "";
  }
  return (await readFile(`/proc/${pid}/cgroup`, "utf8")).match(/^0::(.*)$/m)?.[1] ?? "";
}

/** The sub-cgroups of `cg` in the hierarchy of `controller` (v1 here). */
async function cgroupChildren(controller: string, cg: string): Promise<string[]> {
  const dir = path.join("/sys/fs/cgroup", controller, cg);
  const entries = (await readdir(dir, { withFileTypes: true }).catch(ignoreErrno("ENOENT"))) ?? [];
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

/** The per-pod services (shim-main) and QEMUs of a kata-ts root. */
async function podProcesses(kataRoot: string): Promise<{ services: number[]; qemus: number[] }> {
  const all = await processArgs();
  const services = all
    .filter(({ argv }) => isServiceArgv(argv) && argv[argv.indexOf("--root") + 1] === kataRoot)
    .map((p) => p.pid);
  const qemus = all
    .filter(
      ({ argv }) => path.basename(argv[0] ?? "").startsWith("qemu-system") && argv.some((a) => a.includes(kataRoot)),
    )
    .map((p) => p.pid);
  return { services, qemus };
}

async function timed<T>(t: TestContext, what: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await f();
  t.diagnostic(`${what}: ${Math.round(performance.now() - t0)} ms`);
  return r;
}

describe(
  "Kubernetes CRI flow (real containerd CRI plugin, kata-ts runtime handler, CNI bridge, real VM)",
  { skip: requires("root", "qemu", "image", "containerd", "cni") },
  () => {
    let ctrd: TestContainerd | undefined;
    let cri: CriClient | undefined;
    let pod: KubePod | undefined;
    let podId = "";
    let podIp = "";
    let netnsPath = "";
    const ids: Record<string, string> = {};

    const containerA = (p: KubePod): KubeContainer => ({
      name: "writer",
      image: testImageName,
      runAsUser: 1000,
      readonlyRootfs: true,
      command: [
        "sh",
        "-c",
        `echo writer-started; id -G > /data/writer-groups; echo disk-ok > /data/from-writer; echo mem-ok > /mem/from-writer; ${untilTerm}`,
      ],
      emptyDirs: { cache: "/data", scratch: "/mem" },
      binds: [{ hostPath: path.join(p.kubeletRoot, "pods", p.uid, "etc-hosts"), containerPath: "/etc/hosts" }],
    });
    const containerB = (p: KubePod): KubeContainer => ({
      name: "server",
      image: testImageName,
      runAsUser: 0,
      command: [
        "sh",
        "-c",
        `mkdir -p /tmp/www && echo pod-http-ok > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && ${untilTerm}`,
      ],
      emptyDirs: { cache: "/data", scratch: "/mem" },
      binds: [{ hostPath: path.join(p.kubeletRoot, "pods", p.uid, "etc-hosts"), containerPath: "/etc/hosts" }],
    });

    before(async () => {
      ctrd = await startContainerd({ cri: true });
      cri = new CriClient(ctrd.address);
      const uid = randomUUID();
      pod = {
        name: "cri-test",
        namespace: "default",
        uid,
        kubeletRoot: path.join(ctrd.dir, "kubelet"),
        logRoot: path.join(ctrd.dir, "pods-log"),
        cgroupParent,
        runAsUser: 1000,
        fsGroup: 2000,
      };
      // The kubelet's volume setup: a disk emptyDir owned by the fsGroup (setgid), a tmpfs for medium Memory.
      for (const v of ["cache", "scratch"]) {
        const dir = emptyDirHostPath(pod, v);
        await mkdir(dir, { recursive: true });
        await chown(dir, 0, 2000);
        await chmod(dir, 0o2777);
      }
      const mem = await runner.run("mount", [
        "-t",
        "tmpfs",
        "-o",
        "size=64m,mode=2777",
        "tmpfs",
        emptyDirHostPath(pod, "scratch"),
      ]);
      assert.equal(mem.code, 0, mem.stderr);
      await chown(emptyDirHostPath(pod, "scratch"), 0, 2000);
      await writeFile(path.join(pod.kubeletRoot, "pods", uid, "etc-hosts"), "127.0.0.1 localhost\n");
      await mkdir(pod.logRoot, { recursive: true });
    });

    after(async () => {
      cri?.close();
      if (process.env["KATA_TS_TEST_KEEP_LOG"] !== undefined && ctrd !== undefined) {
        await writeFile(process.env["KATA_TS_TEST_KEEP_LOG"], await ctrd.log());
      }
      if (pod !== undefined) await runner.run("umount", [emptyDirHostPath(pod, "scratch")]);
      await ctrd?.stop();
      // The pod's cgroup parent is the kubelet's: runc and kata-ts make it when missing and leave it (empty).
      for (const controller of (await readdir("/sys/fs/cgroup").catch(ignoreErrno("ENOENT"))) ?? []) {
        await rmdir(path.join("/sys/fs/cgroup", controller, cgroupParent)).catch(ignoreErrno("ENOENT", "ENOTDIR"));
      }
    });

    it("answers Version as containerd's CRI v1", async () => {
      assert.ok(cri !== undefined);
      const v = await cri.version();
      assert.equal(v.runtimeName, "containerd");
      assert.equal(v.runtimeApiVersion, "v1");
    });

    it("runs the pod sandbox on kata-ts with an address from the CNI bridge", { timeout: vmTimeoutMs }, async (t) => {
      assert.ok(cri !== undefined && ctrd?.cri !== undefined && pod !== undefined);
      const c = cri;
      const config = kubeletSandboxConfig(pod);
      podId = await timed(t, "RunPodSandbox", () => c.runPodSandbox(config, kataHandler));
      const st = await cri.podSandboxStatus(podId, { verbose: true });
      assert.equal(st.status?.state, PodSandboxState.SANDBOX_READY);
      assert.equal(st.status.runtimeHandler, kataHandler);
      podIp = st.status.network?.ip ?? "";
      const prefix = ctrd.cri.network.subnet.replace(/\.0\/24$/, ".");
      assert.ok(podIp.startsWith(prefix), `pod IP ${podIp} is in ${ctrd.cri.network.subnet}`);
      const info = JSON.parse(st.info["info"] ?? "{}") as {
        runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } };
      };
      netnsPath = info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === "network")?.path ?? "";
      assert.ok(netnsPath.startsWith(`${ctrd.cri.netnsDir}/cni-`), `netns ${netnsPath} under ${ctrd.cri.netnsDir}`);
      const procs = await podProcesses(ctrd.kataRoot);
      assert.equal(procs.services.length, 1, "one service for the pod");
      assert.equal(procs.qemus.length, 1, "one VM for the pod");
      // sandbox_cgroup_only: the VM's cost is the pod's, in the cgroup the kubelet gave it.
      for (const pid of [...procs.services, ...procs.qemus]) {
        for (const controller of ["memory", "cpu", "pids"]) {
          const cg = await cgroupOf(pid, controller);
          assert.ok(
            cg.startsWith(`${cgroupParent}/`),
            `pid ${pid} ${controller} cgroup ${cg} is under ${cgroupParent}`,
          );
        }
      }
    });

    it(
      "runs an init container to completion (exit code 0 in ContainerStatus) and a failing one (exit 7)",
      { timeout: vmTimeoutMs },
      async (t) => {
        assert.ok(cri !== undefined && pod !== undefined);
        const c = cri;
        const p = pod;
        const sandboxConfig = kubeletSandboxConfig(p);
        for (const [name, script, code] of [
          ["init", "echo init-done > /data/init-marker", 0],
          ["failing", "echo failing >&2; exit 7", 7],
        ] as const) {
          const id = await c.createContainer(
            podId,
            kubeletContainerConfig(p, {
              name,
              image: testImageName,
              command: ["sh", "-c", script],
              emptyDirs: { cache: "/data" },
            }),
            sandboxConfig,
          );
          await timed(t, `StartContainer (${name})`, () => c.startContainer(id));
          let st = await c.containerStatus(id);
          assert.ok(
            await eventually(async () => {
              st = await c.containerStatus(id);
              return st.status?.state === ContainerState.CONTAINER_EXITED;
            }, 60_000),
            `${name} exits`,
          );
          assert.equal(st.status?.exitCode, code, `${name}'s exit code`);
          assert.equal(st.status.reason, code === 0 ? "Completed" : "Error");
          await c.removeContainer(id);
        }
      },
    );

    it(
      "runs two containers sharing a memory and a disk emptyDir, as a non-root user with the fsGroup",
      { timeout: vmTimeoutMs },
      async (t) => {
        assert.ok(cri !== undefined && ctrd !== undefined && pod !== undefined);
        const c = cri;
        const sandboxConfig = kubeletSandboxConfig(pod);
        const p = pod;
        ids["a"] = await timed(t, "CreateContainer (first)", () =>
          c.createContainer(podId, kubeletContainerConfig(p, containerA(p)), sandboxConfig),
        );
        await timed(t, "StartContainer (first)", () => c.startContainer(ids["a"] ?? ""));
        ids["b"] = await timed(t, "CreateContainer (second)", () =>
          c.createContainer(podId, kubeletContainerConfig(p, containerB(p)), sandboxConfig),
        );
        await timed(t, "StartContainer (second)", () => c.startContainer(ids["b"] ?? ""));
        const listed = await cri.listContainers({ podSandboxId: podId });
        assert.deepEqual(listed.map((c) => [c.metadata?.name, c.state]).sort(), [
          ["server", ContainerState.CONTAINER_RUNNING],
          ["writer", ContainerState.CONTAINER_RUNNING],
        ]);
        const procs = await podProcesses(ctrd.kataRoot);
        assert.equal(procs.services.length, 1, "still one service for a pod of two containers (and its sandbox)");
        assert.equal(procs.qemus.length, 1, "still one VM");

        const a = ids["a"] ?? "";
        const b = ids["b"] ?? "";
        assert.ok(
          await eventually(async () => {
            const r = await c.execSync(b, ["cat", "/data/from-writer", "/mem/from-writer", "/data/init-marker"], 10);
            return r.exitCode === 0;
          }, 30_000),
          "the writer's files appear",
        );
        const read = await timed(t, "ExecSync", () =>
          c.execSync(b, ["sh", "-c", "cat /data/from-writer /mem/from-writer; stat -c %g /data/from-writer"], 10),
        );
        assert.equal(
          Buffer.from(read.stdout).toString(),
          "disk-ok\nmem-ok\n2000\n",
          Buffer.from(read.stderr).toString(),
        );
        assert.equal(read.exitCode, 0);
        const failing = await cri.execSync(b, ["sh", "-c", "echo oops >&2; exit 3"], 10);
        assert.equal(failing.exitCode, 3);
        assert.equal(Buffer.from(failing.stderr).toString(), "oops\n");
        const who = await cri.execSync(a, ["sh", "-c", "id -u; cat /data/writer-groups"], 10);
        const [uid, groups = ""] = Buffer.from(who.stdout).toString().trim().split("\n");
        assert.equal(uid, "1000", "run_as_user");
        assert.ok(groups.split(" ").includes("2000"), `supplemental group 2000 (fsGroup) in ${groups}`);
        const shm = await cri.execSync(a, ["sh", "-c", "echo shm-ok > /dev/shm/from-writer"], 10);
        assert.equal(shm.exitCode, 0, Buffer.from(shm.stderr).toString());
        const podFiles = await cri.execSync(
          b,
          ["sh", "-c", "hostname; cat /dev/shm/from-writer; cat /etc/resolv.conf"],
          10,
        );
        assert.match(
          Buffer.from(podFiles.stdout).toString(),
          /^cri-test\nshm-ok\n[^]*search default\.svc\.cluster\.local/,
          `the pod's hostname, shared /dev/shm (ipc POD) and resolv.conf: ${Buffer.from(podFiles.stderr).toString()}`,
        );
        const ro = await cri.execSync(
          a,
          ["sh", "-c", "touch /rootfs-write 2>&1; echo rc=$?; grep ' / ' /proc/mounts; echo $KUBERNETES_SERVICE_HOST"],
          10,
        );
        const roOut = Buffer.from(ro.stdout).toString();
        assert.match(roOut, /Read-only file system\nrc=1\n/, `readonly_rootfs: ${roOut}`);
        assert.match(roOut, /\n10\.96\.0\.1\n$/, "the container's env");
        const t0 = Date.now();
        await assert.rejects(cri.execSync(a, ["sleep", "61"], 2), /ExecSync: .*timeout 2s exceeded/);
        const timedOut = Date.now() - t0;
        t.diagnostic(`ExecSync past its 2 s timeout: ${timedOut} ms`);
        // containerd SIGKILLs the exec and waits for its exit and its output's end: a kill that missed the
        // process (it went to crun exec) ended only with kata-ts's 10 s output drain timeout.
        assert.ok(timedOut < 9000, `the killed exec ended at once (${timedOut} ms)`);
        const after = await cri.execSync(a, ["sh", "-c", "ps -o args | grep -c '^sleep 61$' || true"], 10);
        assert.equal(Buffer.from(after.stdout).toString(), "0\n", "the timed-out exec's process is gone");
        const hosts = await cri.execSync(a, ["cat", "/etc/hosts"], 10);
        assert.equal(Buffer.from(hosts.stdout).toString(), "127.0.0.1 localhost\n", "the kubelet's hosts file");

        for (const v of ["cache", "scratch"]) {
          assert.deepEqual(await readdir(emptyDirHostPath(pod, v)), [], `nothing of ${v} on the host`);
        }
        const log = await readFile(
          path.join(ctrd.dir, "pods-log", `default_cri-test_${pod.uid}`, "writer", "0.log"),
          "utf8",
        );
        assert.match(log, / stdout F writer-started\n/, "the container's stdout in its CRI log");
      },
    );

    it("answers HTTP from the host at the pod IP", { timeout: 60_000 }, async () => {
      let body = "";
      assert.ok(
        await eventually(async () => {
          const r = await fetch(`http://${podIp}:8080/index.html`, { signal: AbortSignal.timeout(5000) }).catch(
            (e: unknown) => e,
          );
          if (!(r instanceof Response)) return false;
          body = await r.text();
          return r.ok;
        }, 30_000),
        `GET http://${podIp}:8080/`,
      );
      assert.equal(body, "pod-http-ok\n");
    });

    it("reports ContainerStats of a running container", async (t) => {
      assert.ok(cri !== undefined);
      const c = cri;
      const s = await timed(t, "ContainerStats", () => c.containerStats(ids["a"] ?? ""));
      assert.equal(s.attributes?.id, ids["a"]);
      assert.ok(
        (s.memory?.workingSetBytes?.value ?? 0n) > 0n,
        `memory working set ${s.memory?.workingSetBytes?.value}`,
      );
      assert.ok((s.cpu?.usageCoreNanoSeconds?.value ?? 0n) > 0n, `cpu usage ${s.cpu?.usageCoreNanoSeconds?.value}`);
    });

    it(
      "stops and removes the containers and the pod, and leaves nothing behind",
      { timeout: vmTimeoutMs },
      async (t) => {
        assert.ok(cri !== undefined && ctrd?.cri !== undefined && pod !== undefined);
        const c = cri;
        for (const k of ["a", "b"]) {
          const id = ids[k] ?? "";
          await timed(t, `StopContainer ${k}`, () => c.stopContainer(id, 5));
          const st = await cri.containerStatus(id);
          assert.equal(st.status?.state, ContainerState.CONTAINER_EXITED);
          await timed(t, `RemoveContainer ${k}`, () => c.removeContainer(id));
        }
        await timed(t, "StopPodSandbox", () => c.stopPodSandbox(podId));
        await timed(t, "RemovePodSandbox", () => c.removePodSandbox(podId));
        assert.deepEqual(await cri.listPodSandbox(), []);
        const kataRoot = ctrd.kataRoot;
        assert.ok(
          await eventually(async () => {
            const p = await podProcesses(kataRoot);
            return p.services.length === 0 && p.qemus.length === 0;
          }, 30_000),
          "no service and no QEMU of the pod",
        );
        assert.deepEqual(await leftovers(kataRoot), []);
        assert.deepEqual(await cgroupChildren("memory", cgroupParent), [], "the pod's cgroup is removed");
        const mounts = parseMountInfo(await readFile("/proc/self/mountinfo", "utf8"));
        assert.deepEqual(mountsUnder(mounts, path.join(ctrd.dir, "root")), [], "no mount under containerd's root");
        assert.deepEqual(mountsUnder(mounts, path.join(ctrd.dir, "state")), [], "no mount under containerd's state");
        assert.deepEqual((await readdir(ctrd.cri.netnsDir).catch(ignoreErrno("ENOENT"))) ?? [], [], "no netns");
        const ports = await runner.run("ip", ["-j", "link", "show", "master", ctrd.cri.network.bridge]);
        assert.deepEqual(JSON.parse(ports.stdout || "[]"), [], "no veth left on the bridge");
        for (const v of ["cache", "scratch"]) {
          assert.deepEqual(await readdir(emptyDirHostPath(pod, v)), [], `nothing of ${v} on the host`);
        }
      },
    );

    it(
      "tears a pod down the kubelet's other way: StopPodSandbox with its containers running, then RemovePodSandbox",
      { timeout: vmTimeoutMs },
      async (t) => {
        assert.ok(cri !== undefined && ctrd?.cri !== undefined && pod !== undefined);
        const c = cri;
        const kataRoot = ctrd.kataRoot;
        const netnsDir = ctrd.cri.netnsDir;
        const p2: KubePod = { ...pod, name: "cri-test-2", uid: randomUUID() };
        for (const v of ["cache", "scratch"]) await mkdir(emptyDirHostPath(p2, v), { recursive: true, mode: 0o777 });
        const config = kubeletSandboxConfig(p2);
        const id = await timed(t, "RunPodSandbox (second pod)", () => c.runPodSandbox(config, kataHandler));
        for (const name of ["one", "two"]) {
          const cid = await c.createContainer(
            id,
            kubeletContainerConfig(p2, {
              name,
              image: testImageName,
              command: ["sh", "-c", `echo ${name} > /data/${name}; ${untilTerm}`],
              emptyDirs: { cache: "/data", scratch: "/mem" },
            }),
            config,
          );
          await c.startContainer(cid);
        }
        const procs = await podProcesses(ctrd.kataRoot);
        assert.equal(procs.services.length, 1, "one service for a pod of two containers");
        await timed(t, "StopPodSandbox (containers running)", () => c.stopPodSandbox(id));
        const left = await c.listContainers({ podSandboxId: id });
        assert.deepEqual(
          left.map((x) => x.state),
          [ContainerState.CONTAINER_EXITED, ContainerState.CONTAINER_EXITED],
        );
        await timed(t, "RemovePodSandbox (removes its containers)", () => c.removePodSandbox(id));
        assert.deepEqual(await c.listContainers({ podSandboxId: id }), []);
        assert.ok(
          await eventually(async () => {
            const p = await podProcesses(kataRoot);
            return p.services.length === 0 && p.qemus.length === 0;
          }, 30_000),
          "no service and no QEMU of the pod",
        );
        assert.deepEqual(await leftovers(kataRoot), []);
        assert.deepEqual((await readdir(netnsDir).catch(ignoreErrno("ENOENT"))) ?? [], [], "no netns");
        for (const v of ["cache", "scratch"]) assert.deepEqual(await readdir(emptyDirHostPath(p2, v)), []);
      },
    );

    it(
      "runs the same pod with the runc handler (the comparison the benchmark makes)",
      { timeout: 60_000 },
      async (t) => {
        assert.ok(cri !== undefined && pod !== undefined);
        const c = cri;
        const p3: KubePod = { ...pod, name: "cri-runc", uid: randomUUID() };
        const config = kubeletSandboxConfig(p3);
        const id = await timed(t, "RunPodSandbox (runc)", () => c.runPodSandbox(config, runcHandler));
        const cid = await c.createContainer(
          id,
          kubeletContainerConfig(p3, { name: "one", image: testImageName, command: ["sh", "-c", untilTerm] }),
          config,
        );
        await timed(t, "StartContainer (runc)", () => c.startContainer(cid));
        const r = await timed(t, "ExecSync (runc)", () => c.execSync(cid, ["id", "-u"], 10));
        assert.equal(Buffer.from(r.stdout).toString(), "1000\n");
        await c.stopPodSandbox(id);
        await c.removePodSandbox(id);
        assert.deepEqual(await c.listPodSandbox(), []);
      },
    );
  },
);
