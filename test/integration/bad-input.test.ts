// Bad input to `kata-ts run`: one clear error each, and nothing left behind (no QEMU, mount or dir).

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { buildFloorInitrd, floorAnnouncement, floorStayParam } from "../../src/image/floor-image.js";
import { readGuestImage } from "../../src/image/guest-image.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, removeRunRoot, runCli } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();

describe("kata-ts run with bad input", { skip: requires("root", "qemu", "image") }, () => {
  let work = "";
  let root = "";
  let good = "";
  let kernel = "";

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-bad-"));
    root = await makeRunRoot();
    good = await makeBusyboxBundle({ runner }, { dir: path.join(work, "good"), args: ["true"] });
    const image = await readGuestImage(testImageDir);
    assert.ok(image, `guest image in ${testImageDir}`);
    kernel = image.kernelPath;
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  async function runFails(args: string[], env: NodeJS.ProcessEnv = {}, global: string[] = []): Promise<string> {
    const r = await runCli(["--root", root, ...global, "run", ...args], {
      env: { ...process.env, KATA_TS_IMAGE_DIR: testImageDir, ...env },
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 1, `expected exit 1, got ${String(r.code)}; stderr: ${r.stderr}`);
    assert.equal(r.stdout.length, 0);
    assert.equal(r.stderr.trim().split("\n")[0]?.startsWith("kata-ts: "), true, r.stderr);
    assert.deepEqual(await leftovers(root), []);
    return r.stderr;
  }

  it("names a missing bundle", async () => {
    const err = await runFails(["--bundle", path.join(work, "nope"), "c1"]);

    assert.match(err, /bundle .*\/nope does not exist/);
  });

  it("gives the position of a JSON syntax error in config.json", async () => {
    const dir = path.join(work, "badjson");
    await makeBusyboxBundle({ runner }, { dir, args: ["true"] });
    await writeFile(path.join(dir, "config.json"), '{\n  "ociVersion": "1.0.2",\n  "root": {"path": "rootfs"},,\n}\n');

    const err = await runFails(["--bundle", dir, "c1"]);

    assert.match(err, /config\.json is not valid JSON at line 3, column \d+/);
  });

  it("lists every invalid field of config.json with its path", async () => {
    const dir = path.join(work, "badfields");
    await makeBusyboxBundle({ runner }, { dir, args: ["true"] });
    await writeFile(
      path.join(dir, "config.json"),
      JSON.stringify({ ociVersion: 1, root: { path: "rootfs" }, process: { user: { uid: "0", gid: 0 }, cwd: "/" } }),
    );

    const err = await runFails(["--bundle", dir, "c1"]);

    assert.match(err, /ociVersion must be a string/);
    assert.match(err, /process\.user\.uid must be an integer/);
  });

  it("names a missing rootfs", async () => {
    const dir = path.join(work, "norootfs");
    await makeBusyboxBundle({ runner }, { dir, args: ["true"], edit: (s) => (s.root = { path: "missing-rootfs" }) });

    const err = await runFails(["--bundle", dir, "c1"]);

    assert.match(err, /rootfs .*missing-rootfs .*does not exist/);
  });

  it("refuses a container id that is a path", async () => {
    const err = await runFails(["--bundle", good, "../escape"]);

    assert.match(err, /invalid container id "\.\.\/escape"/);
  });

  /** A configuration.toml with these [hypervisor.qemu] / [agent.kata] lines, for one test. */
  async function config(name: string, hypervisor: string, agent = ""): Promise<string> {
    const file = path.join(work, `${name}.toml`);
    await writeFile(file, `[hypervisor.qemu]\n${hypervisor}\n\n[agent.kata]\n${agent}\n`);
    return file;
  }

  it("names a missing kernel and the command that builds it", async () => {
    const cfg = await config("nokernel", `kernel = "/nonexistent/vmlinux"`);

    const err = await runFails(["--bundle", good, "c1"], {}, ["--config", cfg]);

    assert.match(err, /guest kernel \/nonexistent\/vmlinux not found \(build the guest image: kata-ts image build\)/);
  });

  it("names a missing initrd and the command that builds it", async () => {
    const cfg = await config("noinitrd", `kernel = "${kernel}"\ninitrd = "/nonexistent/initrd.img"`);

    const err = await runFails(["--bundle", good, "c1"], {}, ["--config", cfg]);

    assert.match(
      err,
      /guest initrd \/nonexistent\/initrd\.img not found \(build the guest image: kata-ts image build\)/,
    );
  });

  it("says which image directory is empty and how to fill it", async () => {
    const empty = path.join(work, "empty-image");

    const err = await runFails(["--bundle", good, "c1"], { KATA_TS_IMAGE_DIR: empty });

    assert.match(
      err,
      new RegExp(`no complete guest image .* in ${empty}: build it with: kata-ts image build --output ${empty}`),
    );
  });

  it("names the package when QEMU is not installed", async () => {
    const cfg = await config("noqemu", `path = "/nonexistent/qemu-system-x86_64"`);

    const err = await runFails(["--bundle", good, "c1"], {}, ["--config", cfg]);

    assert.match(
      err,
      /\/nonexistent\/qemu-system-x86_64 is not installed \(install the Debian package qemu-system-x86/,
    );
  });

  it("names the file, section and key of a bad configuration value", async () => {
    const cfg = await config("badvalue", "default_memory = 1");

    const err = await runFails(["--bundle", good, "c1"], {}, ["--config", cfg]);

    assert.match(err, new RegExp(`${cfg}: \\[hypervisor\\.qemu\\] default_memory`));
  });

  it("gives up on a guest that never answers, with the console's last lines", { timeout: 120_000 }, async () => {
    const floor = await buildFloorInitrd({ runner }, path.join(work, "floor"));

    const cfg = await config(
      "floor",
      `kernel = "${kernel}"\ninitrd = "${floor}"\nkernel_params = "${floorStayParam}"`,
      // Long enough for the floor guest to print its line on a loaded host; it never answers, so the test waits it out.
      "dial_timeout = 20",
    );

    const err = await runFails(["--bundle", good, "c1"], {}, ["--config", cfg]);

    assert.match(err, /the guest agent did not answer within 20000 ms/);
    assert.match(err, new RegExp(floorAnnouncement));
  });
});
