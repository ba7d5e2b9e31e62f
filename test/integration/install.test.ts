// `kata-ts install --write` against a real containerd (Debian's 1.6) with the CRI plugin on: a private
// config (its own root, state and sockets, as test/helpers/containerd.ts makes, CRI enabled), the links
// in a temp bin dir on containerd's PATH; containerd loads the CRI plugin with kata-ts's runtime handler,
// runs a container through the linked shim, and `--uninstall` gives the config back byte-for-byte.
// Then the DaemonSet's script (deploy/kata-ts-deploy.sh) on a release laid out by deploy/make-release.sh.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import {
  cp,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  readlink,
  realpath,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { delay } from "../../src/base/async.js";
import { ignoreErrno } from "../../src/base/errors.js";
import { NodeProcessRunner, type RunResult } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { writeOciImage } from "../../src/tools/oci-image.js";
import { cliLauncherPath, leftovers, repoRoot, runCli } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";
import { vmTimeoutMs } from "../helpers/vm-world.js";

const runner = new NodeProcessRunner();
const imageName = "docker.io/library/kata-ts-busybox:latest";

describe("kata-ts install --write into a real containerd's config", { skip: requires("root", "containerd") }, () => {
  let dir = "";
  let config = "";
  let original = "";
  let address = "";
  let child: ChildProcess | undefined;
  let exited: Promise<void> | undefined;

  const ctr = (args: readonly string[], timeoutMs = 60_000): Promise<RunResult> =>
    runner.run("ctr", ["--address", address, ...args], { signal: AbortSignal.timeout(timeoutMs) });
  const log = (): Promise<string> => readFile(path.join(dir, "containerd.log"), "utf8");

  async function stopContainerd(): Promise<void> {
    if (child === undefined || exited === undefined) return;
    child.kill("SIGTERM");
    await Promise.race([exited, delay(10_000)]);
    child.kill("SIGKILL");
    await exited;
    child = undefined;
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-ctrd-install-"));
    address = path.join(dir, "containerd.sock");
    config = path.join(dir, "config.toml");
    await mkdir(path.join(dir, "bin"));
    await mkdir(path.join(dir, "kata"), { mode: 0o700 });
    // No runtimes of its own: install must name runc again, or containerd drops its default runtime.
    original = [
      "# a private containerd for install.test.ts",
      "version = 2",
      `root = "${path.join(dir, "root")}"`,
      `state = "${path.join(dir, "state")}"`,
      "[grpc]",
      `  address = "${address}"`,
      "[ttrpc]",
      `  address = "${address}.ttrpc"`,
      "[debug]",
      '  level = "info"',
      "",
    ].join("\n");
    await writeFile(config, original);
    await writeFile(path.join(dir, "configuration.toml"), "");
  });

  after(async () => {
    await stopContainerd();
    const mounts = (await readFile("/proc/self/mountinfo", "utf8"))
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((m) => m.startsWith(`${dir}/`))
      .sort()
      .reverse();
    for (const m of mounts) await runner.run("umount", ["-l", m]);
    await rm(dir, { recursive: true, force: true });
  });

  it("links the shim and the CLI into --bin-dir and appends kata-ts's block to the config", async () => {
    const r = await runCli([
      "install",
      "--write",
      "--bin-dir",
      path.join(dir, "bin"),
      "--containerd-config",
      config,
      "--config-path",
      path.join(dir, "configuration.toml"),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "");
    assert.match(r.stderr, /restart containerd/);
    assert.equal(
      await readlink(path.join(dir, "bin", "containerd-shim-kata-ts-v2")),
      path.join(repoRoot, "bin/containerd-shim-kata-ts-v2"),
    );
    assert.equal(await readlink(path.join(dir, "bin", "kata-ts")), cliLauncherPath);
    const merged = await readFile(config, "utf8");
    assert.ok(merged.startsWith(original), "the original text comes first, unchanged");
    assert.match(merged, /# BEGIN kata-ts[^]*runtimes\.kata-ts\][^]*# END kata-ts\n$/);
    assert.equal(await readFile(`${config}.kata-ts.bak`, "utf8"), original);
  });

  it("containerd loads the CRI plugin with the kata-ts runtime handler (and keeps runc)", async () => {
    const logFh = await open(path.join(dir, "containerd.log"), "a");
    child = spawn("containerd", ["--config", config], {
      stdio: ["ignore", logFh.fd, logFh.fd],
      env: {
        ...process.env,
        // The shim is a node script (#!/usr/bin/env node): containerd's PATH must find node too.
        PATH: `${path.join(dir, "bin")}:${path.dirname(process.execPath)}:${process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"}`,
        KATA_TS_ROOT: path.join(dir, "kata"),
        KATA_TS_IMAGE_DIR: testImageDir,
      },
    });
    await logFh.close();
    const proc = child;
    exited = new Promise<void>((resolve) => {
      proc.once("exit", () => {
        resolve();
      });
    });
    const end = Date.now() + 20_000;
    while ((await ctr(["version"], 5000)).code !== 0) {
      assert.ok(Date.now() < end && proc.exitCode === null, `containerd did not start: ${await log()}`);
      await delay(200);
    }
    const plugins = await ctr(["plugins", "ls"]);
    assert.equal(plugins.code, 0, plugins.stderr);
    assert.match(
      plugins.stdout,
      /^io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok\s*$/m,
      `${plugins.stdout}\n${await log()}`,
    );
    // There is no crictl here: the CRI plugin logs its whole config when it starts, runtimes included.
    const started = /Start cri plugin with config .*/.exec(await log())?.[0] ?? "";
    assert.match(
      started,
      new RegExp(
        String.raw`Runtimes:map\[kata-ts:\{Type:io\.containerd\.kata-ts\.v2 .*PodAnnotations:\[io\.katacontainers\.\*\] .*` +
          String.raw`Options:map\[ConfigPath:${path.join(dir, "configuration.toml").replaceAll(".", String.raw`\.`)}\] PrivilegedWithoutHostDevices:true`,
      ),
      started,
    );
    assert.match(started, /runc:\{Type:io\.containerd\.runc\.v2 /);
    assert.match(started, /DefaultRuntimeName:runc /);
  });

  it(
    "containerd finds the shim through the link: ctr run --runtime io.containerd.kata-ts.v2 runs in a VM",
    { skip: requires("qemu", "image"), timeout: vmTimeoutMs },
    async () => {
      const bundle = await makeBusyboxBundle({ runner }, { dir: path.join(dir, "image-src"), args: ["sh"] });
      const tarball = path.join(dir, "busybox-oci.tar");
      await writeOciImage({ runner }, { rootfs: path.join(bundle, "rootfs"), out: tarball, name: imageName });
      const imported = await ctr(["images", "import", tarball]);
      assert.equal(imported.code, 0, imported.stderr);
      const manifest = JSON.parse(await readFile(path.join(testImageDir, "manifest.json"), "utf8")) as {
        kernelRelease: string;
      };
      const r = await ctr(
        ["run", "--rm", "--runtime", "io.containerd.kata-ts.v2", imageName, "install1", "uname", "-r"],
        240_000,
      );
      assert.equal(r.code, 0, `${r.stderr}\n${await log()}`);
      assert.equal(r.stdout.trim(), manifest.kernelRelease, "the guest kernel's release, not the host's");
      assert.deepEqual(await leftovers(path.join(dir, "kata")), [], "nothing left under kata-ts's root");
    },
  );

  it("--uninstall (twice) removes the links and gives the config back byte-for-byte", async () => {
    await stopContainerd();
    for (let i = 0; i < 2; i++) {
      const r = await runCli([
        "install",
        "--uninstall",
        "--bin-dir",
        path.join(dir, "bin"),
        "--containerd-config",
        config,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, i === 0 ? /removed kata-ts's block/ : /nothing of kata-ts's to remove/);
    }
    assert.equal(await readFile(config, "utf8"), original);
    assert.deepEqual(await readdir(path.join(dir, "bin")), []);
    assert.equal(
      (await readdir(dir)).includes("config.toml.kata-ts.bak"),
      false,
      "the backup, the same as the file now, is gone",
    );
  });
});

/**
 * Runs `sh deploy/kata-ts-deploy.sh <verb>`; for `install`, which then sleeps until SIGTERM, sends
 * SIGTERM once it says it waits for it.
 */
function runDeployScript(
  verb: "install" | "cleanup",
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", [path.join(repoRoot, "deploy", "kata-ts-deploy.sh"), verb], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      // Once the script says it waits: a TERM during its install would end it there.
      if (verb === "install" && out.includes("waiting for SIGTERM")) child.kill("SIGTERM");
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe(
  "deploy/kata-ts-deploy.sh on a release made by deploy/make-release.sh (temp dirs; systemctl and kubectl stubbed)",
  { skip: requires("root", "qemu", "image") },
  () => {
    const version = "0.1.0-test";
    let t = "";
    let env: NodeJS.ProcessEnv = {};
    const original = 'version = 2\n[grpc]\n  address = "/run/kata-ts-deploy-test.sock"\n';
    const calls = async (): Promise<string[]> => {
      const text = (await readFile(path.join(t, "calls"), "utf8").catch(ignoreErrno("ENOENT"))) ?? "";
      await rm(path.join(t, "calls"), { force: true });
      return text.split("\n").filter((l) => l !== "");
    };

    before(async () => {
      t = await mkdtemp(path.join(tmpdir(), "kata-ts-deploy-"));
      // The image's /opt/kata-ts-artifacts, as deploy/Dockerfile lays it out.
      const artifacts = path.join(t, "artifacts");
      await mkdir(path.join(artifacts, "dist"), { recursive: true });
      await mkdir(path.join(artifacts, "deploy"));
      for (const d of ["src", "agent", "native"]) {
        await cp(path.join(repoRoot, "dist", d), path.join(artifacts, "dist", d), { recursive: true });
      }
      await cp(path.join(repoRoot, "package.json"), path.join(artifacts, "package.json"));
      await symlink(await realpath(path.join(repoRoot, "node_modules")), path.join(artifacts, "node_modules"));
      await symlink(path.resolve(testImageDir), path.join(artifacts, "image"));
      const made = await runner.run("sh", [
        path.join(repoRoot, "deploy", "make-release.sh"),
        artifacts,
        process.execPath,
        version,
      ]);
      assert.equal(made.code, 0, made.stderr);
      // The host's systemctl and kubectl (with the pod's ServiceAccount) only record their calls here.
      await mkdir(path.join(t, "stubs"));
      for (const stub of ["systemctl", "kubectl"]) {
        await writeFile(path.join(t, "stubs", stub), `#!/bin/sh\necho "${stub} $*" >>${t}/calls\n`, { mode: 0o755 });
      }
      await mkdir(path.join(t, "bin"));
      await mkdir(path.join(t, "etc"));
      await writeFile(path.join(t, "etc", "config.toml"), original);
      env = {
        PATH: `${path.join(t, "stubs")}:/usr/sbin:/usr/bin:/sbin:/bin`,
        NODE_NAME: "n1",
        CONTAINERD_CONFIG: path.join(t, "etc", "config.toml"),
        KATA_TS_DEPLOY_ARTIFACTS: artifacts,
        KATA_TS_DEPLOY_HOME: path.join(t, "home"),
        KATA_TS_DEPLOY_BIN_DIR: path.join(t, "bin"),
        // nsenter into this process's own namespaces instead of the host's pid 1.
        KATA_TS_DEPLOY_HOST_PID: String(process.pid),
      };
    });

    after(async () => {
      await rm(t, { recursive: true, force: true });
    });

    it("install: copies the release, links its wrappers, writes the config, restarts containerd, labels the node", async () => {
      const r = await runDeployScript("install", env);
      assert.equal(r.code, 0, r.out);
      const dest = path.join(t, "home", version);
      assert.match(r.out, /System is capable of running kata-ts containers/, "kata-ts check ran on the release");
      assert.deepEqual(await calls(), [
        "systemctl restart containerd",
        "systemctl is-active --quiet containerd",
        "kubectl label node n1 katats.io/kata-ts-runtime=true --overwrite",
      ]);
      const shimLink = path.join(t, "bin", "containerd-shim-kata-ts-v2");
      assert.equal(await readlink(shimLink), path.join(dest, "dist", "bin", "containerd-shim-kata-ts-v2"));
      assert.equal(await readlink(path.join(t, "bin", "kata-ts")), path.join(dest, "dist", "bin", "kata-ts"));
      const merged = await readFile(path.join(t, "etc", "config.toml"), "utf8");
      assert.ok(merged.startsWith(original));
      assert.ok(merged.includes(`ConfigPath = "${path.join(dest, "configuration.toml")}"`), merged);
      assert.match(
        await readFile(path.join(dest, "configuration.toml"), "utf8"),
        new RegExp(`initrd = "${dest}/image/initrd.img"`),
      );
      // The link runs the release's own Node: a PATH with no node on it, only what the wrapper uses.
      const minPath = path.join(t, "minpath");
      await mkdir(minPath);
      for (const b of ["dirname", "readlink"]) await symlink(`/usr/bin/${b}`, path.join(minPath, b));
      const v = await runner.run(shimLink, ["-v"], { env: { PATH: minPath } });
      assert.equal(v.code, 0, v.stderr);
      assert.match(v.stdout, /containerd-shim-kata-ts-v2:\s+Version: 0\.1\.0/);
    });

    it("install again: nothing copied, containerd not restarted, the node labelled", async () => {
      const r = await runDeployScript("install", env);
      assert.equal(r.code, 0, r.out);
      assert.doesNotMatch(r.out, /copied kata-ts/);
      assert.match(r.out, /unchanged: containerd not restarted/);
      assert.deepEqual(await calls(), ["kubectl label node n1 katats.io/kata-ts-runtime=true --overwrite"]);
    });

    it("cleanup: unlabels first, uninstalls (config byte-for-byte), restarts containerd, keeps the release", async () => {
      const r = await runDeployScript("cleanup", env);
      assert.equal(r.code, 0, r.out);
      assert.deepEqual(await calls(), [
        "kubectl label node n1 katats.io/kata-ts-runtime-",
        "systemctl restart containerd",
        "systemctl is-active --quiet containerd",
      ]);
      assert.equal(await readFile(path.join(t, "etc", "config.toml"), "utf8"), original);
      assert.deepEqual(await readdir(path.join(t, "bin")), []);
      assert.deepEqual(await readdir(path.join(t, "home")), [version]);
    });
  },
);
