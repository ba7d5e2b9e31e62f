// The VM factory end to end (docs/factory.md): `kata-ts factory init` boots a real template VM, `kata-ts
// run` starts clones of it (real QEMU restoring the saved state, the real agent, crun), and every way a
// template can be wrong either falls back to a direct boot with a warning or fails leaving nothing.
// VM boots are few on purpose: one template, two clones at once, three direct boots, a broken clone.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { parseMountInfo } from "../../src/platform/mountinfo.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCli, type CliResult } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const skip = requires("root", "qemu", "image");
const vmTimeout = 240_000;
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };

/** Prints what differs between clones and what must not: its marker file, boot_id, randomness, clock. */
const probeScript =
  "cat /marker; cat /proc/sys/kernel/random/boot_id; head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s";

describe("VM factory: template and clones (real VMs)", { skip, concurrency: false }, () => {
  const runner = new NodeProcessRunner();
  let work = "";
  let root = "";
  /** The template's parent: a leak check over it finds the tmpfs and any QEMU naming its files. */
  let factoryDir = "";
  let templatePath = "";
  let config = "";
  let logFile = "";

  async function writeConfig(name: string, extra: string): Promise<string> {
    const file = path.join(work, `${name}.toml`);
    await writeFile(
      file,
      `${extra}\n[factory]\nenable_template = true\ntemplate_path = "${templatePath}"\n`.replace(/^\n/, ""),
    );
    return file;
  }

  function kata(args: readonly string[], cfg = config): Promise<CliResult> {
    return runCli(["--root", root, "--config", cfg, "--log", logFile, ...args], { env, timeoutMs: vmTimeout });
  }

  async function bundle(name: string, script: string): Promise<string> {
    const dir = await makeBusyboxBundle({ runner }, { dir: path.join(work, name), args: ["sh", "-c", script] });
    await writeFile(path.join(dir, "rootfs", "marker"), `marker of ${name}\n`);
    return dir;
  }

  /** Log lines of sandbox `id` since the log was last cut. */
  async function logOf(id: string): Promise<string> {
    const text = await readFile(logFile, "utf8");
    return text
      .split("\n")
      .filter((l) => l.includes(id))
      .join("\n");
  }

  async function noLeaks(ids: readonly string[]): Promise<void> {
    assert.deepEqual(await leftovers(root), [], "leftovers under --root");
    assert.deepEqual(await netnsLeft(ids), [], "network namespaces left");
  }

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-factory-"));
    root = await makeRunRoot();
    factoryDir = `/run/kata-ts-it-factory-${process.pid}`;
    templatePath = path.join(factoryDir, "template");
    await mkdir(factoryDir, { recursive: true, mode: 0o700 });
    logFile = path.join(work, "kata.log");
    config = await writeConfig("factory", "");
  });

  after(async () => {
    // A failed test may leave the template: remove it, then what it lived in.
    const destroyed = await kata(["factory", "destroy"]);
    assert.equal(destroyed.code, 0, `factory destroy after the tests: ${destroyed.stderr}`);
    await rm(factoryDir, { recursive: true, force: true });
    await removeRunRoot(root);
    await rm(work, { recursive: true, force: true });
  });

  it("factory init makes the template; status and env say so", { timeout: vmTimeout }, async () => {
    const before = await kata(["factory", "status"]);
    assert.equal(before.stdout.toString(), "vm factory is off\n", before.stderr);

    const init = await kata(["factory", "init"]);

    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout.toString(), /^vm factory initialized: template in /);
    const status = await kata(["factory", "status"]);
    assert.match(status.stdout.toString(), /^vm factory is on: /);
    const envOut = await kata(["env", "--json"]);
    const factory = (JSON.parse(envOut.stdout.toString()) as { Factory: Record<string, unknown> }).Factory;
    assert.equal(factory["TemplateState"], "on");
    const mount = parseMountInfo(await readFile("/proc/self/mountinfo", "utf8")).find(
      (m) => m.mountPoint === templatePath,
    );
    assert.equal(mount?.fstype, "tmpfs");
    // Nothing runs once the template is saved.
    assert.deepEqual(
      (await leftovers(factoryDir)).filter((l) => l.startsWith("qemu")),
      [],
    );
    const again = await kata(["factory", "init"]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already exists/);
  });

  it(
    "two clones at once: each runs its container, sees its own files, and none shares randomness or a stale clock",
    {
      timeout: vmTimeout,
    },
    async () => {
      const ids = ["fclone1", "fclone2"];
      const dirs = await Promise.all(ids.map((id) => bundle(id, probeScript)));
      const startS = Date.now() / 1000;

      const results = await Promise.all(ids.map((id, i) => kata(["run", "--bundle", dirs[i] ?? "", id])));

      const endS = Date.now() / 1000;
      const outs = results.map((r, i) => {
        assert.equal(r.code, 0, `${ids[i]}: ${r.stderr}`);
        const [marker, bootId, random, date] = r.stdout.toString().split("\n");
        return { marker, bootId, random, date: Number(date) };
      });
      for (const [i, o] of outs.entries()) {
        assert.equal(o.marker, `marker of ${ids[i]}`);
        assert.match(o.bootId ?? "", /^[0-9a-f-]{36}$/);
        assert.match(o.random ?? "", /^[0-9a-f]{128}$/);
        assert.ok(
          o.date >= startS - 2 && o.date <= endS + 2,
          `guest clock ${o.date} not within [${startS}, ${endS}] ± 2 s`,
        );
        assert.match(await logOf(ids[i] ?? ""), /started from the VM template/);
      }
      assert.notEqual(outs[0]?.bootId, outs[1]?.bootId, "boot_id");
      assert.notEqual(outs[0]?.random, outs[1]?.random, "/dev/urandom");
      await noLeaks(ids);
    },
  );

  it(
    "a sandbox whose VM does not match the template boots directly, with a warning",
    { timeout: vmTimeout },
    async () => {
      const cfg = await writeConfig("mismatch", "[hypervisor.qemu]\ndefault_memory = 1024");
      const dir = await bundle("fmismatch", "echo direct");

      const r = await kata(["run", "--bundle", dir, "fmismatch"], cfg);

      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), "direct\n");
      const log = await logOf("fmismatch");
      assert.match(log, /cannot use the VM template; booting directly.*memory MiB: template 2048, sandbox 1024/);
      assert.doesNotMatch(log, /started from the VM template/);
      await noLeaks(["fmismatch"]);
    },
  );

  it("a truncated template state file: direct boot with a warning", { timeout: vmTimeout }, async () => {
    const state = path.join(templatePath, "state");
    const saved = path.join(work, "state.saved");
    await copyFile(state, saved);
    await truncate(state, 100);
    const dir = await bundle("ftrunc", "echo direct");
    try {
      const r = await kata(["run", "--bundle", dir, "ftrunc"]);

      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), "direct\n");
      assert.match(await logOf("ftrunc"), /cannot use the VM template; booting directly.*state file .*: 100 bytes/);
      await noLeaks(["ftrunc"]);
    } finally {
      await copyFile(saved, state);
    }
  });

  it(
    "a template state QEMU cannot load (same size, garbage): direct boot with a warning",
    {
      timeout: vmTimeout,
    },
    async () => {
      const state = path.join(templatePath, "state");
      const saved = path.join(work, "state.saved");
      await copyFile(state, saved);
      await writeFile(state, Buffer.alloc((await stat(state)).size, 0x5a));
      const dir = await bundle("fgarbage", "echo direct");
      try {
        const r = await kata(["run", "--bundle", dir, "fgarbage"]);

        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.toString(), "direct\n");
        assert.match(await logOf("fgarbage"), /the VM template did not restore; booting directly/);
        assert.doesNotMatch(await logOf("fgarbage"), /started from the VM template/);
        await noLeaks(["fgarbage"]);
      } finally {
        await copyFile(saved, state);
      }
    },
  );

  it(
    "a clone whose agent never answers is torn down; the error carries the guest console",
    {
      timeout: vmTimeout,
    },
    async () => {
      // Same size, all zeros: the restored guest runs no code of its own.
      const memory = path.join(templatePath, "memory");
      const size = (await stat(memory)).size;
      await truncate(memory, 0);
      await truncate(memory, size);
      const cfg = await writeConfig("broken", "[agent.kata]\ndial_timeout = 20");
      const dir = await bundle("fbroken", "echo never");

      const r = await kata(["run", "--bundle", dir, "fbroken"], cfg);

      assert.notEqual(r.code, 0);
      assert.equal(r.stdout.toString(), "");
      assert.match(r.stderr, /boot sandbox fbroken: .*guest console/s);
      assert.match(await logOf("fbroken"), /started from the VM template/);
      await noLeaks(["fbroken"]);
    },
  );

  it("factory destroy leaves no QEMU, socket, tmpfs mount or file", { timeout: vmTimeout }, async () => {
    const r = await kata(["factory", "destroy"]);

    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "vm factory destroyed\n");
    assert.deepEqual(await leftovers(factoryDir), []);
    await assert.rejects(stat(templatePath), { code: "ENOENT" });
    assert.equal((await kata(["factory", "status"])).stdout.toString(), "vm factory is off\n");
  });

  it(
    "a template path holding another file system is refused by init, destroy and status",
    {
      timeout: vmTimeout,
    },
    async () => {
      await mkdir(templatePath, { mode: 0o700 });
      await runner.run("mount", ["-t", "tmpfs", "-o", "size=1M", "not-kata", templatePath]);
      try {
        const init = await kata(["factory", "init"]);
        const destroy = await kata(["factory", "destroy"]);
        const status = await kata(["factory", "status"]);

        assert.notEqual(init.code, 0);
        assert.match(init.stderr, /not the tmpfs kata-ts factory init makes/);
        assert.notEqual(destroy.code, 0);
        assert.match(destroy.stderr, /not removing it/);
        assert.match(status.stdout.toString(), /^vm factory is broken: .*not the tmpfs/);
        const still = parseMountInfo(await readFile("/proc/self/mountinfo", "utf8")).find(
          (m) => m.mountPoint === templatePath,
        );
        assert.equal(still?.source, "not-kata", "the other mount is left alone");
      } finally {
        await runner.run("umount", [templatePath]);
        await rm(templatePath, { recursive: true, force: true });
      }
    },
  );
});
