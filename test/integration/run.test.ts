// `kata-ts run` end to end: real QEMU (KVM or TCG), the real guest agent in the built initrd, real crun.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import type { Spec } from "../../src/oci/spec.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCli } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const skip = requires("root", "qemu", "image");
const vmTimeout = 180_000;
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };

describe("kata-ts run (real VM)", { skip }, () => {
  let work = "";
  let root = "";
  const runner = new NodeProcessRunner();

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-bundles-"));
    root = await makeRunRoot();
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  async function bundle(name: string, script: string, edit?: (s: Spec) => void): Promise<string> {
    return makeBusyboxBundle(
      { runner },
      { dir: path.join(work, name), args: ["sh", "-c", script], ...(edit === undefined ? {} : { edit }) },
    );
  }

  async function run(id: string, dir: string, input?: string): Promise<Awaited<ReturnType<typeof runCli>>> {
    const r = await runCli(["--root", root, "run", "--bundle", dir, id], {
      env,
      timeoutMs: vmTimeout,
      ...(input === undefined ? {} : { input }),
    });
    assert.deepEqual(await leftovers(root), [], `leftovers after ${id}`);
    assert.deepEqual(await netnsLeft([id]), [], `network namespace left after ${id}`);
    return r;
  }

  it("prints the guest kernel release, not the host's", { timeout: vmTimeout }, async () => {
    const dir = await bundle("uname", 'echo "hello from the guest"; uname -r; cat /proc/version');

    const r = await run("uname", dir);

    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    const lines = r.stdout.toString().split("\n");
    assert.equal(lines[0], "hello from the guest");
    assert.match(lines[1] ?? "", /^\d+\.\d+\.\d+-\d+-amd64$/);
    assert.notEqual(lines[1], (await runner.run("uname", ["-r"])).stdout.trim());
  });

  for (const code of [0, 3]) {
    it(`propagates exit code ${code}`, { timeout: vmTimeout }, async () => {
      const dir = await bundle(`exit${code}`, `exit ${code}`);

      const r = await run(`exit${code}`, dir);

      assert.equal(r.code, code, r.stderr);
    });
  }

  it("propagates death by SIGKILL as 137", { timeout: vmTimeout }, async () => {
    // Without its own pid namespace the shell is not a namespace init, so SIGKILL is not ignored.
    const dir = await bundle("kill9", "kill -9 $$", (s) => {
      if (s.linux?.namespaces) s.linux.namespaces = s.linux.namespaces.filter((n) => n.type !== "pid");
    });

    const r = await run("kill9", dir);

    assert.equal(r.code, 137, r.stderr);
  });

  it("delivers 10 MB of stdout whole", { timeout: vmTimeout }, async () => {
    const dir = await bundle("big", "head -c 10485760 /dev/zero | tr '\\0' 'k'; echo; echo done >&2");

    const r = await run("big", dir);

    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, 10 * 1024 * 1024 + 1);
    assert.equal(
      r.stdout.subarray(0, -1).every((b) => b === 0x6b),
      true,
    );
    assert.equal(r.stderr, "done\n");
  });

  it("forwards stdin to the container", { timeout: vmTimeout }, async () => {
    const dir = await bundle("stdin", "tr a-z A-Z; echo '<eof>'");

    const r = await run("stdin", dir, "hello stdin\nsecond line\n");

    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "HELLO STDIN\nSECOND LINE\n<eof>\n");
  });

  it(
    "tears the VM down when kata-ts run gets SIGTERM and the container ignores it",
    { timeout: vmTimeout },
    async () => {
      const dir = await bundle("forever", "echo started; while true; do sleep 1; done");
      let signalled = false;
      const running = runCli(["--root", root, "run", "--bundle", dir, "forever"], {
        env,
        timeoutMs: vmTimeout,
        onStdout: (soFar, kill) => {
          if (!signalled && soFar.includes("started")) {
            signalled = true;
            kill("SIGTERM");
          }
        },
      });

      const r = await running;

      // SIGTERM is forwarded; the shell (a namespace init) ignores it, so it is killed after the grace.
      assert.equal(r.code, 137, r.stderr);
      assert.match(r.stdout.toString(), /started/);
      assert.deepEqual(await leftovers(root), []);
    },
  );

  it("takes the VM down with it when kata-ts run is SIGKILLed", { timeout: vmTimeout }, async () => {
    const dir = await bundle("killed", "echo started; while true; do sleep 1; done");
    const killRoot = await makeRunRoot();
    let killed = false;

    const r = await runCli(["--root", killRoot, "run", "--bundle", dir, "killed"], {
      env,
      timeoutMs: vmTimeout,
      onStdout: (soFar, kill) => {
        if (!killed && soFar.includes("started")) {
          killed = true;
          kill("SIGKILL");
        }
      },
    });

    assert.equal(r.signal, "SIGKILL");
    let qemu: string[] = [];
    for (let i = 0; i < 50; i++) {
      qemu = (await leftovers(killRoot)).filter((l) => l.startsWith("qemu process"));
      if (qemu.length === 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.deepEqual(qemu, []);
    // What the killed process made (mounts, netns, state) stays until `delete --force` cleans it up.
    assert.notDeepEqual(await leftovers(killRoot), []);
    const cleaned = await runCli(["--root", killRoot, "delete", "--force", "killed"], { env });
    assert.equal(cleaned.code, 0, cleaned.stderr);
    assert.deepEqual(await leftovers(killRoot), []);
    await removeRunRoot(killRoot);
  });
});
