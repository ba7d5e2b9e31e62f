// Containers on a terminal, on a real VM: `run` and `exec -t` driven from a terminal (our pty helper
// plays the user's terminal), and `create --console-socket` handing a pty master to a receiver (a
// python3 script: Node cannot receive file descriptors).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { cliPath, leftovers, makeRunRoot, removeRunRoot, repoRoot, runCli, runCliToFiles } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const vmTimeout = 180_000;
const ttyHelper = path.join(repoRoot, "dist", "native", "kata-ts-tty");

/** Runs the CLI on a fresh pty of rows x cols, typing `input` once the output contains `waitFor`. */
function onTerminal(
  args: string[],
  rows: number,
  cols: number,
  waitFor: string,
  input: string,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      ttyHelper,
      ["run", String(rows), String(cols), "/nonexistent", "--", process.execPath, cliPath, ...args],
      {
        env,
        stdio: ["pipe", "pipe", "inherit"],
      },
    );
    let out = "";
    let typed = false;
    const timer = setTimeout(() => child.kill("SIGKILL"), vmTimeout);
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (!typed && out.includes(waitFor)) {
        typed = true;
        child.stdin.write(input);
      }
    });
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out: out.replace(/\r/g, "") });
    });
  });
}

const receiver = `
import socket, os, sys, select, time, fcntl, termios, struct
path, script = sys.argv[1], sys.argv[2].encode()
def resize(fd, rows, cols): fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv.bind(path); srv.listen(1)
print("listening", flush=True)
conn, _ = srv.accept()
msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
master, out, sent, deadline = fds[0], b"", False, time.time() + 120
resize(master, 33, 77)  # as conmon does once it holds the master: before the container starts
while time.time() < deadline:
    r, _, _ = select.select([master], [], [], 0.5)
    if master in r:
        try: d = os.read(master, 4096)
        except OSError: break
        if not d: break
        out += d
    if not sent and b"ready" in out:
        resize(master, 44, 88)  # the user resizes the window while the container runs
        os.write(master, script); sent = True
sys.stdout.write(msg.decode() + "\\n" + out.decode(errors="replace")); sys.stdout.flush()
`;

/** A shell loop that waits (at most 20 s) until the terminal's size is `size`. */
function waitSize(size: string): string {
  return `i=0; while [ "$(stty size)" != "${size}" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done`;
}

describe("terminals (real VM)", { skip: requires("root", "qemu", "image", "netns") }, () => {
  let work = "";
  let root = "";

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-tty-"));
    root = await makeRunRoot();
    await writeFile(path.join(work, "receiver.py"), receiver);
  });

  after(async () => {
    for (const id of ["tty-exec", "tty-console"]) await runCli(["--root", root, "delete", "--force", id], { env });
    await rm(work, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  it("runs an interactive container on the caller's terminal, sized like it", { timeout: vmTimeout }, async () => {
    const dir = await makeBusyboxBundle(
      { runner },
      {
        dir: path.join(work, "run"),
        args: ["sh", "-c", "stty size; [ -t 0 ] && echo stdin-is-a-tty; echo ready; read x; echo got:$x; exit 5"],
        edit: (s) => (s.process = { ...s.process, user: { uid: 0, gid: 0 }, cwd: "/", terminal: true }),
      },
    );

    const r = await onTerminal(["--root", root, "run", "--bundle", dir, "tty-run"], 30, 100, "ready", "typed-line\n");

    assert.equal(r.code, 5, r.out);
    assert.match(r.out, /stdin-is-a-tty/);
    assert.match(r.out, /got:typed-line/);
    assert.deepEqual(await leftovers(root), []);
  });

  it("execs a process on the caller's terminal and returns its exit code", { timeout: vmTimeout }, async () => {
    const dir = await makeBusyboxBundle(
      { runner },
      { dir: path.join(work, "exec"), args: ["sh", "-c", "while true; do sleep 1; done"] },
    );
    const created = await runCliToFiles(["--root", root, "create", "--bundle", dir, "tty-exec"], work, {
      env,
      timeoutMs: vmTimeout,
    });
    assert.equal(created.code, 0, created.stderr);
    assert.equal((await runCli(["--root", root, "start", "tty-exec"], { env })).code, 0);

    const r = await onTerminal(
      [
        "--root",
        root,
        "exec",
        "-t",
        "tty-exec",
        "--",
        "sh",
        "-c",
        "stty size; echo ready; read x; echo got:$x; exit 7",
      ],
      33,
      99,
      "ready",
      "abc\n",
    );

    assert.equal(r.code, 7, r.out);
    assert.match(r.out, /^33 99$/m);
    assert.match(r.out, /got:abc/);
    assert.equal(
      (await runCli(["--root", root, "delete", "--force", "tty-exec"], { env, timeoutMs: vmTimeout })).code,
      0,
    );
  });

  it("hands a pty master to the --console-socket of create", { timeout: vmTimeout }, async () => {
    const dir = await makeBusyboxBundle(
      { runner },
      {
        dir: path.join(work, "console"),
        // Each size is waited for (bounded): a resize reaches the guest on its own path, not the input's.
        args: [
          "sh",
          "-c",
          `${waitSize("33 77")}; stty size; echo ready; read x; echo got:$x; ${waitSize("44 88")}; stty size`,
        ],
        edit: (s) =>
          (s.process = {
            ...s.process,
            user: { uid: 0, gid: 0 },
            cwd: "/",
            terminal: true,
            consoleSize: { height: 40, width: 120 },
          }),
      },
    );
    const sock = path.join(work, "console.sock");
    const recv = spawn("python3", [path.join(work, "receiver.py"), sock, "hello-console\n"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let got = "";
    const recvClosed = new Promise((r) => recv.once("close", r));
    recv.stdout.on("data", (d: Buffer) => {
      got += d.toString();
    });
    await new Promise<void>((r) => {
      recv.stdout.once("data", () => {
        r();
      });
    });

    const created = await runCli(["--root", root, "create", "--console-socket", sock, "--bundle", dir, "tty-console"], {
      env,
      timeoutMs: vmTimeout,
    });
    assert.equal(created.code, 0, created.stderr);
    assert.equal((await runCli(["--root", root, "start", "tty-console"], { env })).code, 0);
    const waited = await runCli(["--root", root, "wait", "tty-console"], { env, timeoutMs: vmTimeout });
    await recvClosed;

    assert.match(waited.stdout.toString(), /^0 /);
    assert.match(got, /^\/dev\/pts\/\d+$/m);
    assert.match(got, /got:hello-console/);
    // consoleSize (40 120) first, then the receiver's resizes: before the start, and while it runs.
    assert.match(got, /^33 77$[\s\S]*^44 88$/m);
    assert.equal((await runCli(["--root", root, "delete", "tty-console"], { env })).code, 0);
  });

  it("refuses a terminal container without a console socket, and a console socket without a terminal", async () => {
    const term = await makeBusyboxBundle(
      { runner },
      {
        dir: path.join(work, "t"),
        args: ["true"],
        edit: (s) => (s.process = { ...s.process, user: { uid: 0, gid: 0 }, cwd: "/", terminal: true }),
      },
    );
    const plain = await makeBusyboxBundle({ runner }, { dir: path.join(work, "p"), args: ["true"] });

    const a = await runCli(["--root", root, "create", "--bundle", term, "t1"], { env });
    const b = await runCli(
      ["--root", root, "create", "--console-socket", path.join(work, "x.sock"), "--bundle", plain, "t2"],
      { env },
    );

    assert.match(a.stderr, /process\.terminal true: create needs --console-socket/);
    assert.match(b.stderr, /--console-socket needs process\.terminal true/);
    assert.deepEqual(await leftovers(root), []);
  });
});
