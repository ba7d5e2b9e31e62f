// Attacks from inside a guest, each named after its advisory, on real VMs. The attacker is a container
// with every capability and every device its cgroup allows, sharing the guest's pid namespace: as close
// to a compromised guest as a container gets. Each test passes only when the attack fails.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Spec } from "../../src/oci/spec.js";
import { mountsUnder, parseMountInfo } from "../../src/platform/mountinfo.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { cliPath, leftovers, makeRunRoot, removeRunRoot, runCli, runCliToFiles } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const vmTimeout = 240_000;
const allCaps = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_MKNOD",
  "CAP_SETFCAP",
  "CAP_SYS_ADMIN",
  "CAP_SYS_RAWIO",
];

/** The container as a compromised guest would be: all capabilities, all devices, the guest's pids. */
function privileged(s: Spec): void {
  if (s.process) s.process.capabilities = { bounding: allCaps, effective: allCaps, permitted: allCaps };
  s.linux = {
    ...s.linux,
    namespaces: (s.linux?.namespaces ?? []).filter((n) => n.type !== "pid"),
    resources: { devices: [{ allow: true, access: "rwm" }] },
    maskedPaths: [],
    readonlyPaths: [],
  };
}

async function sha256(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

describe("attacks from a guest (real VM)", { skip: requires("root", "qemu", "image", "netns") }, () => {
  let work = "";
  let root = "";
  let n = 0;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-attacks-"));
    root = await makeRunRoot();
  });

  after(async () => {
    await removeRunRoot(root);
    await rm(work, { recursive: true, force: true });
  });

  async function runAttack(script: string, edit: (s: Spec) => void = () => undefined): Promise<string> {
    const dir = path.join(work, `b${++n}`);
    const bundle = await makeBusyboxBundle(
      { runner },
      {
        dir,
        args: ["sh", "-c", script],
        edit: (s) => {
          privileged(s);
          edit(s);
        },
      },
    );
    const r = await runCli(["--root", root, "run", "--bundle", bundle, `attack${n}-${process.pid}`], {
      env,
      timeoutMs: vmTimeout,
    });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.toString();
  }

  it("CVE-2020-2023/-2025: cannot write the guest image's disk, and the host's copy stays as it was", async () => {
    const tools = path.join(testImageDir, "tools.erofs");
    const before = await sha256(tools);
    // Every block device the guest has: the tools disk is one of them (read-only virtio-blk).
    const out = await runAttack(
      "mount -t devtmpfs none /dev 2>/dev/null; for d in /dev/vd?; do dd if=/dev/zero of=$d bs=4096 count=1 conv=notrunc 2>/dev/null; echo $d=$?; done",
    );

    assert.match(out, /\/dev\/vd[a-z]=[1-9]/, `no disk was found to attack: ${out}`);
    assert.doesNotMatch(out, /=0\b/, out);
    assert.equal(await sha256(tools), before, "the tools disk on the host changed");
  });

  it("runc CVE-2019-5736: cannot overwrite the host's runtime binaries through /proc/self/exe", async () => {
    const hostBinaries = [process.execPath, cliPath, "/usr/bin/qemu-system-x86_64"];
    const before = await Promise.all(hostBinaries.map(sha256));

    const out = await runAttack(
      "for p in /proc/self/exe /proc/1/exe; do echo x > $p 2>/dev/null; echo $p=$?; done; " +
        "for p in $(ls -d /proc/[0-9]*); do cat $p/cmdline 2>/dev/null | tr '\\0' ' '; echo; done | grep -c . ",
    );

    assert.doesNotMatch(out, /exe=0/, out);
    assert.deepEqual(await Promise.all(hostBinaries.map(sha256)), before);
  });

  it("CVE-2020-2024: symlinks planted in the shared rootfs and volume make the host unmount nothing of its own", async () => {
    // A host mount point the attacker names: it must still be mounted after the container is deleted.
    const victim = path.join(work, "victim");
    await mkdir(victim);
    await runner.run("mount", ["-t", "tmpfs", "victim", victim]);
    try {
      const volume = path.join(work, "vol");
      await mkdir(volume);
      await writeFile(path.join(volume, "keep"), "");
      await runAttack(
        `for d in / /vol; do for n in rootfs volumes tmp x; do rm -rf $d/$n 2>/dev/null; ln -s ${victim} $d/$n 2>/dev/null; done; done; ls -la /vol`,
        (s) => {
          s.mounts = [...(s.mounts ?? []), { destination: "/vol", type: "bind", source: volume, options: ["rbind"] }];
        },
      );

      assert.deepEqual(mountsUnder(parseMountInfo(await readFile("/proc/self/mountinfo", "utf8")), victim), [victim]);
      assert.deepEqual(await leftovers(root), []);
    } finally {
      await runner.run("umount", [victim]);
    }
  });

  it("cannot see or reach another pod's shared files (share isolation between pods)", async () => {
    // Pod A keeps running with a secret in its rootfs; pod B looks for it everywhere its guest can.
    const secret = `secret-${process.pid}`;
    const aDir = path.join(work, "podA");
    const a = await makeBusyboxBundle(
      { runner },
      { dir: aDir, args: ["sh", "-c", `echo ${secret} > /secret; sleep 1000`], edit: privileged },
    );
    const aId = `poda${process.pid}`;
    assert.equal(
      (await runCliToFiles(["--root", root, "create", "--bundle", a, aId], work, { env, timeoutMs: vmTimeout })).code,
      0,
    );
    assert.equal((await runCliToFiles(["--root", root, "start", aId], work, { env, timeoutMs: vmTimeout })).code, 0);
    try {
      const out = await runAttack(
        `grep -rl ${secret} /run /mnt /tmp 2>/dev/null; ls /run/kata-containers/shared/containers/; echo searched`,
      );

      assert.match(out, /searched/);
      assert.doesNotMatch(out, new RegExp(secret), out);
      assert.doesNotMatch(out, new RegExp(aId), "pod B's guest lists pod A's container");
    } finally {
      await runCli(["--root", root, "delete", "--force", aId], { env, timeoutMs: vmTimeout });
    }
    assert.deepEqual(await leftovers(root), []);
  });
});
