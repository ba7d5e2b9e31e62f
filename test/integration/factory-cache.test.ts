// The VM cache end to end (docs/factory.md#vm-cache): `kata-ts factory init` with vm_cache_number = 1
// serves real pre-booted VMs (real QEMU under kata-ts-vmguard, the real agent, crun); sandboxes take
// them over, and every fault leaves nothing behind. Boots are few on purpose: the first server boots
// three cached VMs (one handed to `run`, one to a service killed -9, one killed with its server), two
// sandboxes boot directly (a mismatch, the server killed while waited on), and a second and third
// server test Quit and SIGTERM.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { lstat, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ignoreErrno } from "../../src/base/errors.js";
import { cacheNetnsPrefix } from "../../src/factory/cache-net-plan.js";
import { netnsRunDir } from "../../src/network/netns.js";
import { NodeProcessRunner, processExists } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import {
  cliPath,
  leftovers,
  makeRunRoot,
  removeRunRoot,
  runCli,
  runCliToFiles,
  type CliResult,
} from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const skip = requires("root", "qemu", "image");
const vmTimeout = 240_000;
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };

describe("VM cache: a pool of pre-booted VMs (real VMs)", { skip, concurrency: false }, () => {
  const runner = new NodeProcessRunner();
  let work = "";
  let root = "";
  let endpoint = "";
  let config = "";
  let logFile = "";
  let server: { child: ChildProcess; out: () => string; exited: Promise<number | null> } | undefined;

  function kata(args: readonly string[], cfg = config): Promise<CliResult> {
    return runCli(["--root", root, "--config", cfg, "--log", logFile, ...args], { env, timeoutMs: vmTimeout });
  }

  /** `factory init` in the background, as a user runs the cache server. */
  function startServer(cfg = config): NonNullable<typeof server> {
    const child = spawn(
      process.execPath,
      [cliPath, "--root", root, "--config", cfg, "--log", logFile, "factory", "init"],
      {
        env,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.once("close", (code) => {
        resolve(code);
      }),
    );
    return { child, out: () => out, exited };
  }

  async function status(): Promise<string> {
    return (await kata(["factory", "status"])).stdout.toString();
  }

  async function waitReady(n: number, timeoutMs = 120_000): Promise<string> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const s = await status();
      if (s.includes(`, ${n} ready)`)) return s;
      if (server !== undefined && server.child.exitCode !== null)
        throw new Error(`the VM cache server exited: ${server.out()}`);
      if (Date.now() > until) throw new Error(`the VM cache did not reach ${n} ready VMs: ${s}\n${server?.out()}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  async function bundle(name: string, args: string[]): Promise<string> {
    return makeBusyboxBundle({ runner }, { dir: path.join(work, name), args });
  }

  async function logOf(id: string): Promise<string> {
    return (await readFile(logFile, "utf8"))
      .split("\n")
      .filter((l) => l.includes(id))
      .join("\n");
  }

  /**
   * What a sandbox leaves: its QEMU (by pid: while the server runs, its cached VMs' QEMUs and share
   * mounts are under --root too), mounts, state and services under --root; without a server, also
   * every QEMU, guard, mount, the cache's socket, its directory and its VMs' network namespaces.
   */
  async function noLeaks(opts: { cache: boolean; vmPids?: readonly number[] }): Promise<void> {
    const cacheDir = `${endpoint}.d`;
    let found = await leftovers(root);
    if (opts.cache) {
      found = found.filter((f) => !f.startsWith("qemu process ") && !f.startsWith(`mount ${cacheDir}/`));
    } else {
      for (const entry of await readdir("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        const argv = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(ignoreErrno("ENOENT", "ESRCH"));
        if (argv?.includes("kata-ts-vmguard") === true && argv.includes(root)) found.push(`vm guard ${entry}`);
      }
      for (const p of [endpoint, cacheDir]) {
        if ((await lstat(p).catch(ignoreErrno("ENOENT"))) !== undefined) found.push(p);
      }
      // Each cached VM's own netns (docs/factory.md#nics-in-cached-vms).
      const names = (await readdir(netnsRunDir).catch(ignoreErrno("ENOENT"))) ?? [];
      found.push(...names.filter((n) => n.startsWith(cacheNetnsPrefix(cacheDir))).map((n) => `netns ${n}`));
    }
    for (const pid of opts.vmPids ?? []) if (processExists(pid)) found.push(`the sandbox's QEMU ${pid}`);
    assert.deepEqual(found, [], "leftovers");
  }

  /** QEMUs the cache server started (their sockets are under the cache's directory). */
  async function cacheQemus(): Promise<number[]> {
    const pids: number[] = [];
    for (const entry of await readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const argv = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(ignoreErrno("ENOENT", "ESRCH"));
      // By argv[0]: the guard's own arguments name QEMU too.
      const exe = path.basename(argv?.split("\0")[0] ?? "");
      if (exe.startsWith("qemu-system") && argv?.includes(`${endpoint}.d/`) === true) pids.push(Number(entry));
    }
    return pids;
  }

  async function waitFor<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-cache-"));
    // On the same file system as the cache's directory: the VM's directories are renamed into it.
    root = await makeRunRoot();
    endpoint = path.join(root, "cache.sock");
    logFile = path.join(work, "kata.log");
    config = path.join(work, "cache.toml");
    await writeFile(config, `[factory]\nvm_cache_number = 1\nvm_cache_endpoint = "${endpoint}"\n`);
  });

  after(async () => {
    server?.child.kill("SIGKILL");
    await server?.exited;
    const destroyed = await kata(["factory", "destroy"]);
    assert.equal(destroyed.code, 0, `factory destroy after the tests: ${destroyed.stderr}`);
    await rm(path.join(root, "cache.sock"), { force: true });
    await removeRunRoot(root);
    await rm(work, { recursive: true, force: true });
  });

  it(
    "init serves the cache: a taken socket is refused, status and env show the pool",
    { timeout: vmTimeout },
    async () => {
      assert.match(await status(), /^VM cache is off: no server on /);
      server = startServer();

      const ready = await waitReady(1);

      assert.match(ready, /^VM cache server pid = \d+ \(pool of 1, 1 ready\)\nVM pid = \d+ Cpu = 1 Memory = \d+MiB\n$/);
      assert.match(server.out(), /^vm cache server listening on .*cache\.sock \(1 VMs\)\n/);
      assert.equal((await lstat(endpoint)).mode & 0o777, 0o600);
      const second = await kata(["factory", "init"]);
      assert.notEqual(second.code, 0);
      assert.match(second.stderr, /a VM cache server already listens there/);
      const factory = (
        JSON.parse((await kata(["env", "--json"])).stdout.toString()) as { Factory: Record<string, unknown> }
      ).Factory;
      assert.equal(factory["VMCacheState"], "running");
      assert.equal(factory["VMCacheReady"], 1);
    },
  );

  it("a container runs in a cached VM, its output arrives, and the pool refills", { timeout: vmTimeout }, async () => {
    const cachedPid = /VM pid = (\d+)/.exec(await status())?.[1];
    const dir = await bundle("crun1", ["sh", "-c", "echo hello from the cache; cat /proc/uptime"]);

    const r = await kata(["run", "--bundle", dir, "crun1"]);

    assert.equal(r.code, 0, r.stderr);
    const [hello, uptime] = r.stdout.toString().split("\n");
    assert.equal(hello, "hello from the cache");
    // The guest booted before the container was asked for: it has been up longer than the run took.
    assert.ok(Number(uptime?.split(" ")[0]) > 3, `guest uptime ${uptime}`);
    assert.match(await logOf("crun1"), new RegExp(`took a VM from the VM cache.*vm=cache-1 pid=${cachedPid}`));
    await noLeaks({ cache: true, vmPids: [Number(cachedPid)] });
    const refilled = await waitReady(1);
    assert.doesNotMatch(refilled, new RegExp(`VM pid = ${cachedPid} `), "a new VM, not the one handed out");
  });

  it(
    "a sandbox whose VM does not match the cached ones boots directly, with a warning",
    { timeout: vmTimeout },
    async () => {
      const cfg = path.join(work, "mismatch.toml");
      await writeFile(cfg, `${await readFile(config, "utf8")}[hypervisor.qemu]\nkernel_params = "quiet"\n`);
      const dir = await bundle("cmismatch", ["echo", "direct"]);

      const r = await kata(["run", "--bundle", dir, "cmismatch"], cfg);

      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), "direct\n");
      assert.match(
        await logOf("cmismatch"),
        /cached VMs do not match this sandbox; booting directly.*kernel parameters: cached VM/,
      );
      assert.match(await status(), /1 ready\)/, "the cached VM was not taken");
      await noLeaks({ cache: true });
    },
  );

  it("a service killed -9 takes the QEMU it adopted with it", { timeout: vmTimeout }, async () => {
    const dir = await bundle("ckill", ["sleep", "1000"]);
    // A created container keeps its caller's stdio (as runc's): files, not the test's pipes.
    const created = await runCliToFiles(
      ["--root", root, "--config", config, "--log", logFile, "create", "--bundle", dir, "ckill"],
      work,
      { env, timeoutMs: vmTimeout },
    );
    assert.equal(created.code, 0, created.stderr);
    const state = JSON.parse(await readFile(path.join(root, "sbs", "ckill", "state.json"), "utf8")) as {
      servicePid: number;
      vmPid: number;
    };
    assert.match(await logOf("ckill"), /took a VM from the VM cache/);
    assert.ok(processExists(state.vmPid));

    process.kill(state.servicePid, "SIGKILL");

    for (let i = 0; i < 100 && processExists(state.vmPid); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(processExists(state.vmPid), false, "the adopted QEMU outlived its service");
    const deleted = await kata(["delete", "--force", "ckill"]);
    assert.equal(deleted.code, 0, deleted.stderr);
    await noLeaks({ cache: true, vmPids: [state.vmPid] });
  });

  it(
    "the cache server killed while a sandbox waits on it: the sandbox boots directly",
    { timeout: vmTimeout },
    async () => {
      // The pool is refilling after the previous test took its VM. The refill's QEMU is stopped so that
      // it cannot become ready (under load it once did, within the wait below): the sandbox must wait.
      const refill = await waitFor(async () => (await cacheQemus())[0], "the refilling cached VM's QEMU");
      process.kill(refill, "SIGSTOP");
      assert.match(await status(), /0 ready\)/);
      const dir = await bundle("cwait", ["echo", "booted anyway"]);
      const run = kata(["run", "--bundle", dir, "cwait"]);
      await new Promise((r) => setTimeout(r, 2500));
      const s = server;
      assert.ok(s !== undefined);

      s.child.kill("SIGKILL");
      await s.exited;
      server = undefined;

      const r = await run;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), "booted anyway\n");
      assert.match(await logOf("cwait"), /no VM from the VM cache; booting directly/);
      // The dead server's VM died with it (its guard's lifeline closed); its socket and shares remain
      // until destroy, which says so.
      const destroyed = await kata(["factory", "destroy"]);
      assert.equal(destroyed.code, 0, destroyed.stderr);
      assert.match(destroyed.stdout.toString(), /removed what a dead vm cache server left/);
      await noLeaks({ cache: false });
    },
  );

  it(
    "Quit (factory destroy) and SIGTERM stop the server and every cached VM, leaving nothing",
    { timeout: vmTimeout },
    async () => {
      server = startServer();
      await waitReady(1);
      const destroyed = await kata(["factory", "destroy"]);
      assert.equal(destroyed.code, 0, destroyed.stderr);
      assert.match(destroyed.stdout.toString(), /vm cache server on .* stopped\n/);
      assert.equal(await server.exited, 0, server.out());
      await noLeaks({ cache: false });

      // SIGTERM while its first VM is still booting.
      server = startServer();
      await new Promise((r) => setTimeout(r, 3000));
      server.child.kill("SIGTERM");
      assert.equal(await server.exited, 0, server.out());
      assert.match(server.out(), /vm cache server stopped\n$/);
      server = undefined;
      await noLeaks({ cache: false });
    },
  );
});
