// Descriptors a caller leaves open without close-on-exec (the CVE-2024-21626 class: `exec 200>x; exec
// 300>y; kata-ts create ...`) reach neither the sandbox's service nor QEMU: every descriptor either holds
// is on an allow-list, and fds 200 and 300 (or anything open on their files) fail the test by name.

import assert from "node:assert/strict";
import { mkdtemp, open, readdir, readFile, readlink, rm, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { deferred } from "../../src/base/async.js";
import { ignoreErrno } from "../../src/base/errors.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCli, runCliToFiles } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const skip = requires("root", "qemu", "image");
const vmTimeout = 180_000;
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const strayNumbers = [200, 300];

/** "fd -> target" for every descriptor of `pid`. */
async function openFds(pid: number): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(`/proc/${pid}/fd`)) {
    // ENOENT: closed between the listing and the readlink.
    const target = await readlink(`/proc/${pid}/fd/${entry}`).catch(ignoreErrno("ENOENT"));
    if (target !== undefined) out.push(`${entry} -> ${target}`);
  }
  return out.sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
}

/** Pids the sandbox's state records: the service that holds the VM, and QEMU. */
async function pidsOf(root: string, sandboxId: string): Promise<{ servicePid: number; vmPid: number }> {
  const state: unknown = JSON.parse(await readFile(path.join(root, "sbs", sandboxId, "state.json"), "utf8"));
  assert.ok(
    typeof state === "object" &&
      state !== null &&
      "servicePid" in state &&
      typeof state.servicePid === "number" &&
      "vmPid" in state &&
      typeof state.vmPid === "number",
    `state.json of ${sandboxId} names the service and the VM`,
  );
  return { servicePid: state.servicePid, vmPid: state.vmPid };
}

describe("descriptors the caller leaks (real VM)", { skip }, () => {
  let work = "";
  let strayDir = "";
  let root = "";
  const stray: FileHandle[] = [];
  const runner = new NodeProcessRunner();

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-fds-"));
    strayDir = await mkdtemp(path.join(tmpdir(), "kata-ts-stray-"));
    root = await makeRunRoot();
    for (const n of strayNumbers) stray.push(await open(path.join(strayDir, `fd${n}`), "w"));
  });

  after(async () => {
    for (const f of stray) await f.close();
    await rm(work, { recursive: true, force: true });
    await rm(strayDir, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  const strayFds = (): Record<number, number> =>
    Object.fromEntries(strayNumbers.map((n, i) => [n, stray[i]?.fd ?? -1]));

  /**
   * What `pid` holds that it should not: a stray number or file, or a target off the allow-list
   * (the standard streams' /dev/null, the log, the container's stdio files under `work`, sockets,
   * pipes, anonymous inodes, the sandbox's state, VM and share directories, the guest image, KVM).
   */
  async function unexpected(pid: number, log: string): Promise<string[]> {
    const allowedPrefixes = [`${root}/`, `${work}/`, `${testImageDir}/`];
    const allowedExact = new Set(["/dev/null", "/dev/kvm", "/dev/urandom", "/dev/net/tun", log]);
    const fds = await openFds(pid);
    return fds.filter((line) => {
      const [fd = "", target = ""] = line.split(" -> ");
      if (strayNumbers.includes(Number(fd)) || target.startsWith(`${strayDir}/`)) return true;
      if (/^(socket|pipe|anon_inode):/.test(target)) return false;
      return !allowedExact.has(target) && !allowedPrefixes.some((p) => target.startsWith(p));
    });
  }

  it("create: the service and QEMU hold none of the caller's stray descriptors", { timeout: vmTimeout }, async () => {
    const id = "fds-create";
    const log = path.join(work, "create.log");
    const dir = await makeBusyboxBundle({ runner }, { dir: path.join(work, "create"), args: ["sleep", "600"] });

    const created = await runCliToFiles(["--root", root, "--log", log, "create", "--bundle", dir, id], work, {
      env,
      timeoutMs: vmTimeout,
      strayFds: strayFds(),
    });
    assert.equal(created.code, 0, created.stderr);
    try {
      const { servicePid, vmPid } = await pidsOf(root, id);
      const service = await unexpected(servicePid, log);
      const qemu = await unexpected(vmPid, log);
      process.stdout.write(
        `# service ${servicePid} fds: ${(await openFds(servicePid)).join(", ")}\n` +
          `# qemu ${vmPid} fds: ${(await openFds(vmPid)).join(", ")}\n`,
      );

      assert.deepEqual(service, [], "descriptors of the sandbox's service");
      assert.deepEqual(qemu, [], "descriptors of QEMU");
    } finally {
      const deleted = await runCliToFiles(["--root", root, "delete", "--force", id], work, {
        env,
        timeoutMs: vmTimeout,
      });
      assert.equal(deleted.code, 0, deleted.stderr);
    }
    assert.deepEqual(await leftovers(root), []);
    assert.deepEqual(await netnsLeft([id]), []);
  });

  it("run: QEMU holds none of the caller's stray descriptors", { timeout: vmTimeout }, async () => {
    const id = "fds-run";
    const log = path.join(work, "run.log");
    const dir = await makeBusyboxBundle(
      { runner },
      { dir: path.join(work, "run"), args: ["sh", "-c", "echo ready; exec sleep 600"] },
    );
    const ready = deferred<undefined>();

    const running = runCli(["--root", root, "--log", log, "run", "--bundle", dir, id], {
      env,
      timeoutMs: vmTimeout,
      strayFds: strayFds(),
      onStdout: (soFar) => {
        if (soFar.includes("ready\n")) ready.resolve(undefined);
      },
    });
    const notReady = (): void => {
      ready.reject(new Error("run ended before its container said it was ready"));
    };
    void running.then(notReady, notReady);
    await ready.promise;
    try {
      // run hosts the service in its own process: that is the caller's process, holding what the
      // caller gave it; QEMU is its child.
      const { servicePid, vmPid } = await pidsOf(root, id);
      const qemu = await unexpected(vmPid, log);
      process.stdout.write(
        `# run (service) ${servicePid} fds: ${(await openFds(servicePid)).join(", ")}\n` +
          `# qemu ${vmPid} fds: ${(await openFds(vmPid)).join(", ")}\n`,
      );

      assert.deepEqual(qemu, [], "descriptors of QEMU");
    } finally {
      const killed = await runCli(["--root", root, "kill", id, "KILL"], { env, timeoutMs: vmTimeout });
      assert.equal(killed.code, 0, killed.stderr);
    }
    const r = await running;
    assert.equal(r.code, 137, r.stderr);
    assert.deepEqual(await leftovers(root), []);
    assert.deepEqual(await netnsLeft([id]), []);
  });
});
