// podman (Debian's 4.3, with conmon) driving kata-ts as its OCI runtime, as a user would with
// `podman --runtime kata-ts`: real podman, conmon, QEMU, guest agent and crun. The image is the tests'
// busybox, imported locally (no registry); podman's storage is private to the test (vfs, its own root).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { release } from "node:os";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner, runChecked } from "../../src/platform/process.js";
import { cliPath, leftovers, makeRunRoot, netnsLeft, removeRunRoot } from "../helpers/cli.js";
import { podmanImage as image, startPodman, type PodmanResult, type TestPodman } from "../helpers/podman.js";
import { requires } from "../helpers/requires.js";

const skip = requires("root", "qemu", "image", "podman");
const vmTimeout = 300_000;

describe("podman with kata-ts as its runtime (real podman, conmon and VM)", { skip }, () => {
  let root = "";
  let p: TestPodman | undefined;
  const runner = new NodeProcessRunner();

  function podman(args: readonly string[], timeoutMs = vmTimeout): Promise<PodmanResult> {
    if (p === undefined) throw new Error("podman not started");
    return p.podman(args, { timeoutMs });
  }

  before(async () => {
    root = await makeRunRoot();
    p = await startPodman(root);
  });

  after(async () => {
    await p?.close();
    await removeRunRoot(root);
  });

  /** Nothing of kata-ts may remain once podman removed its containers. */
  async function nothingLeft(ids: readonly string[]): Promise<void> {
    assert.deepEqual(await leftovers(root), [], "kata-ts leftovers");
    assert.deepEqual(await netnsLeft(ids), [], "network namespaces left");
  }

  async function fullId(name: string): Promise<string> {
    const r = await podman(["inspect", "--format", "{{.Id}}", name], 60_000);
    return r.stdout.trim();
  }

  it("run --rm prints the guest's kernel release, not the host's", { timeout: vmTimeout }, async () => {
    const r = await podman(["run", "--rm", "--name", "p-uname", "--network", "none", image, "uname", "-r"]);

    assert.equal(r.code, 0, r.stderr);
    const guest = r.stdout.trim();
    assert.match(guest, /^\d+\.\d+\.\d+/);
    assert.notEqual(guest, release(), "the container ran in the VM's kernel");
    await nothingLeft([]);
  });

  it("run --rm exits with the container's exit code", { timeout: vmTimeout }, async () => {
    const r = await podman(["run", "--rm", "--network", "none", image, "sh", "-c", "echo out; echo err >&2; exit 3"]);

    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, "out\n");
    assert.match(r.stderr, /err/);
    await nothingLeft([]);
  });

  it(
    "run -it gives the container a terminal (create --console-socket) and its exit code",
    { timeout: vmTimeout },
    async () => {
      // script(1) gives podman the terminal a user would have; podman asks kata-ts for a console socket.
      if (p === undefined) throw new Error("podman not started");
      const line = ["podman", ...p.baseArgs, "run", "-it", "--rm", "--network", "none", image];
      const cmd = `${line.join(" ")} sh -c 'test -t 0 && echo on-a-tty; stty size; exit 4'`;
      // script's stdin stays open (and empty) until it ends: at end of input script writes an EOF byte
      // into its pty, which podman's raw terminal passes on as the container's input (a CI run saw the
      // guest's terminal echo a stray "^@" before stty's line). A user's terminal sends nothing unasked.
      const quiet = ["-c", 'exec 3< <(sleep 300); script -qec "$0" /dev/null <&3; rc=$?; kill $!; exit $rc', cmd];
      const r = await runner.run("bash", quiet);

      assert.equal(r.code, 4, r.stdout + r.stderr);
      const out = r.stdout.replace(/\r/g, "");
      assert.match(out, /^on-a-tty$/m);
      assert.match(out, /^\d+ \d+$/m, "stty size works on the container's terminal");
      await nothingLeft([]);
    },
  );

  it(
    "run -d, exec, logs, kill (137), rm: the container's life through podman",
    { timeout: 2 * vmTimeout },
    async () => {
      const started = await podman([
        "run",
        "-d",
        "--name",
        "p-life",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        "echo started; while :; do sleep 1; done",
      ]);
      assert.equal(started.code, 0, started.stderr);
      const id = await fullId("p-life");

      const exec = await podman(["exec", "p-life", "sh", "-c", "echo from exec; exit 5"]);
      assert.equal(exec.code, 5, exec.stderr);
      assert.equal(exec.stdout, "from exec\n");

      const state = JSON.parse(
        (
          await new Promise<string>((resolve) => {
            execFile(process.execPath, [cliPath, "--root", root, "state", id], (_e, stdout) => {
              resolve(stdout);
            });
          })
        ).trim(),
      ) as { pid: number; status: string };
      assert.equal(state.status, "running");
      const conmonPid = Number((await podman(["inspect", "--format", "{{.State.ConmonPid}}", "p-life"])).stdout.trim());
      const ppid = await runChecked(runner, "ps", ["-o", "ppid=", "-p", String(state.pid)]);
      assert.equal(Number(ppid.stdout.trim()), conmonPid, "the container's pid is conmon's child (its subreaper)");

      const logs = await podman(["logs", "p-life"]);
      assert.equal(logs.stdout, "started\n");

      const killed = await podman(["kill", "--signal", "KILL", "p-life"]);
      assert.equal(killed.code, 0, killed.stderr);
      const waited = await podman(["wait", "p-life"]);
      assert.equal(waited.stdout.trim(), "137");

      const removed = await podman(["rm", "p-life"]);
      assert.equal(removed.code, 0, removed.stderr);
      await nothingLeft([id]);
    },
  );

  it("stop ends a container that ignores SIGTERM (SIGKILL after the timeout)", { timeout: vmTimeout }, async () => {
    // sh as the container's pid 1 ignores SIGTERM, as under runc: stop falls back to SIGKILL.
    const started = await podman(["run", "-d", "--name", "p-stop", "--network", "none", image, "sleep", "1000"]);
    assert.equal(started.code, 0, started.stderr);
    const id = await fullId("p-stop");

    const stopped = await podman(["stop", "--time", "2", "p-stop"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    const code = await podman(["inspect", "--format", "{{.State.ExitCode}}", "p-stop"]);
    assert.equal(code.stdout.trim(), "137");

    assert.equal((await podman(["rm", "p-stop"])).code, 0);
    await nothingLeft([id]);
  });
});
