// `kata-ts install --write` against a real containerd (Debian's 1.6) with the CRI plugin on: a private
// config (its own root, state and sockets, as test/helpers/containerd.ts makes, CRI enabled), the links
// in a temp bin dir on containerd's PATH; containerd loads the CRI plugin with kata-ts's runtime handler,
// runs a container through the linked shim, and `--uninstall` gives the config back byte-for-byte.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, open, readFile, readdir, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { delay } from "../../src/base/async.js";
import { NodeProcessRunner, type RunResult } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { writeOciImage } from "../../src/tools/oci-image.js";
import { cliPath, leftovers, repoRoot, runCli } from "../helpers/cli.js";
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
      path.join(repoRoot, "dist/src/cli/containerd-shim-main.js"),
    );
    assert.equal(await readlink(path.join(dir, "bin", "kata-ts")), cliPath);
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
