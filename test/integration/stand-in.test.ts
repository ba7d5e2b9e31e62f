// The container's process on the host, as a shell sees it (real VM): `create --pid-file` gives the pid
// of a process stand-in that writes the container's output through the caller's own descriptors, dies
// when the container does, and forwards the signals sent to it; `run` writes through the caller's too.

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { cliPath, leftovers, makeRunRoot, netnsLeft, removeRunRoot, repoRoot } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const skip = requires("root", "qemu", "image");
const vmTimeout = 240_000;

describe("the process stand-in and the caller's descriptors (real VM)", { skip }, () => {
  let work = "";
  let root = "";
  const runner = new NodeProcessRunner();
  let kataTs = "";
  let cliArgs: string[] = [];

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-standin-"));
    root = await makeRunRoot();
    cliArgs = [cliPath, "--root", root, "--log", path.join(work, "kata.log")];
    kataTs = `env KATA_TS_IMAGE_DIR=${testImageDir} ${process.execPath} ${cliArgs.join(" ")}`;
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  /** Runs a shell script with $K the CLI, $W the work directory; resolves with its exit code and output. */
  function sh(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        "sh",
        ["-c", script],
        { env: { ...process.env, K: kataTs, W: work }, timeout: vmTimeout, killSignal: "SIGKILL" },
        (e, stdout, stderr) => {
          resolve({ code: e === null ? 0 : typeof e.code === "number" ? e.code : -1, stdout, stderr });
        },
      );
    });
  }

  async function bundle(name: string, script: string): Promise<string> {
    return makeBusyboxBundle({ runner }, { dir: path.join(work, name), args: ["sh", "-c", script] });
  }

  it(
    "create --pid-file: output lands at the caller's file offset, `kill PID` reaches the container, the pid ends with it",
    { timeout: vmTimeout },
    async () => {
      await bundle("trap", 'trap "echo got TERM; exit 7" TERM; echo IN; while :; do sleep 1; done');

      const r = await sh(`
        ( echo BEFORE
          $K create --pid-file $W/pid --bundle $W/trap st-trap && $K start st-trap || exit 90
          until grep -q IN $W/out; do sleep 0.2; done
          $K state st-trap > $W/state-running
          kill -TERM $(cat $W/pid)
          tail --pid=$(cat $W/pid) -f /dev/null
          echo AFTER ) > $W/out
        $K state st-trap > $W/state-stopped
        $K wait st-trap > $W/wait
        $K delete st-trap`);

      assert.equal(r.code, 0, r.stderr);
      assert.equal(await readFile(path.join(work, "out"), "utf8"), "BEFORE\nIN\ngot TERM\nAFTER\n");
      const pid = Number(await readFile(path.join(work, "pid"), "utf8"));
      const running = JSON.parse(await readFile(path.join(work, "state-running"), "utf8")) as { pid: number };
      assert.equal(running.pid, pid, "state's pid is the --pid-file's");
      const stopped = JSON.parse(await readFile(path.join(work, "state-stopped"), "utf8")) as { pid: number };
      assert.equal(stopped.pid, 0, "a stopped container has no pid, as with runc");
      assert.match(await readFile(path.join(work, "wait"), "utf8"), /^7 /);
      assert.deepEqual(await leftovers(root), []);
      assert.deepEqual(await netnsLeft(["st-trap"]), []);
    },
  );

  it(
    "run appends to a file opened with >> in order, and exits with the container's code",
    { timeout: vmTimeout },
    async () => {
      await bundle("three", "echo IN; exit 3");
      await writeFile(path.join(work, "appended"), "OLD\n");

      const r = await sh(
        `( echo BEFORE; $K run --bundle $W/three st-append; echo "rc=$?"; echo AFTER ) >> $W/appended`,
      );

      assert.equal(r.code, 0, r.stderr);
      assert.equal(await readFile(path.join(work, "appended"), "utf8"), "OLD\nBEFORE\nIN\nrc=3\nAFTER\n");
      assert.deepEqual(await leftovers(root), []);
    },
  );

  it(
    "Ctrl-C on a terminal reaches the CLI alone, which forwards it to the container",
    { timeout: vmTimeout },
    async () => {
      await bundle("int", 'trap "echo got INT; exit 9" INT; echo ready; while :; do sleep 1; done');
      // Our pty helper plays the user's terminal: the CLI runs on its slave, in its foreground process group.
      const helper = path.join(repoRoot, "dist", "native", "kata-ts-tty");
      const args = [...cliArgs, "run", "--bundle", path.join(work, "int"), "st-int"];

      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(helper, ["run", "24", "80", "/nonexistent", "--", process.execPath, ...args], {
          env: { ...process.env, KATA_TS_IMAGE_DIR: testImageDir },
          stdio: ["pipe", "pipe", "inherit"],
        });
        let out = "";
        let typed = false;
        const timer = setTimeout(() => child.kill("SIGKILL"), vmTimeout);
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (!typed && out.includes("ready")) {
            typed = true;
            child.stdin.write("\x03");
          }
        });
        child.once("close", (code) => {
          clearTimeout(timer);
          resolve({ code, out: out.replace(/\r/g, "") });
        });
      });

      assert.match(r.out, /got INT/);
      assert.equal(r.code, 9, r.out);
      assert.deepEqual(await leftovers(root), []);
    },
  );

  it("a signal during the VM's boot tears everything down and says so", { timeout: vmTimeout }, async () => {
    await bundle("boot", "echo never");

    const r = await sh(`
      n=$(grep -c "qemu started" $W/kata.log 2>/dev/null || true)
      $K run --bundle $W/boot st-boot > $W/boot.out 2> $W/boot.err &
      until [ "$(grep -c "qemu started" $W/kata.log 2>/dev/null || true)" -gt "\${n:-0}" ]; do sleep 0.1; done
      kill -TERM $!
      wait $!`);

    // SIGTERM: a non-interactive shell starts background jobs with SIGINT ignored.
    assert.equal(r.code, 143, await readFile(path.join(work, "boot.err"), "utf8"));
    assert.match(
      await readFile(path.join(work, "boot.err"), "utf8"),
      /^kata-ts: SIGTERM before the container started: container st-boot and its VM were torn down\n$/,
    );
    assert.equal(await readFile(path.join(work, "boot.out"), "utf8"), "");
    assert.deepEqual(await leftovers(root), []);
    assert.deepEqual(await netnsLeft(["st-boot"]), []);
  });

  it("run writes to a pipe, whose reader sees its end when the container ended", { timeout: vmTimeout }, async () => {
    await bundle("piped", "echo one; echo two >&2; echo three");

    const r = await sh(`$K run --bundle $W/piped st-pipe 2>&1 | sed 's/^/| /'`);

    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split("\n").sort(), ["", "| one", "| three", "| two"]);
    assert.deepEqual(await leftovers(root), []);
  });
});
