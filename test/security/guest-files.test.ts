// A container that may do anything in a read-write volume (root, CAP_FSETID, CAP_MKNOD, CAP_CHOWN,
// CAP_SETFCAP, every device allowed by its cgroup) tries to leave the host something more than data:
// a setuid or setgid binary, a device node. QEMU's 9p server does the guest's bidding in the shared
// directory as root, so the defence is kata-ts-confine's seccomp filter on QEMU. Real VM, real crun.

import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, removeRunRoot, runCli } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_MKNOD", "CAP_SETFCAP"];

describe(
  "files a guest makes in a shared volume (real VM)",
  { skip: requires("root", "qemu", "image", "netns") },
  () => {
    let work = "";
    let root = "";
    let volume = "";

    before(async () => {
      work = await mkdtemp(path.join(tmpdir(), "kata-ts-sec-files-"));
      root = await makeRunRoot();
      volume = path.join(work, "volume");
      await mkdir(volume);
    });

    after(async () => {
      await removeRunRoot(root);
      await rm(work, { recursive: true, force: true });
    });

    it("cannot leave a setuid or setgid binary, or a device node, in the host directory", async () => {
      const script = [
        "cp /bin/busybox /vol/sh",
        "chmod 4755 /vol/sh; echo suid=$?",
        "chmod 2755 /vol/sh; echo sgid=$?",
        "mknod /vol/null c 1 3; echo chr=$?",
        "mknod /vol/sda b 8 0; echo blk=$?",
        "touch /vol/plain; chmod 755 /vol/plain; echo plain=$?",
      ].join("; ");
      const bundle = await makeBusyboxBundle(
        { runner },
        {
          dir: path.join(work, "bundle"),
          args: ["sh", "-c", script],
          edit: (s) => {
            s.mounts = [...(s.mounts ?? []), { destination: "/vol", type: "bind", source: volume, options: ["rbind"] }];
            if (s.process) s.process.capabilities = { bounding: caps, effective: caps, permitted: caps };
            s.linux = { ...s.linux, resources: { devices: [{ allow: true, access: "rwm" }] } };
          },
        },
      );

      const r = await runCli(["--root", root, "run", "--bundle", bundle, `files${process.pid}`], {
        env,
        timeoutMs: 240_000,
      });

      const out = r.stdout.toString();
      assert.equal(r.code, 0, r.stderr);
      assert.match(out, /plain=0/, "ordinary modes still work");
      assert.match(out, /suid=[1-9]/, out);
      assert.match(out, /sgid=[1-9]/, out);
      assert.match(out, /chr=[1-9]/, out);
      assert.match(out, /blk=[1-9]/, out);
      const sh = await lstat(path.join(volume, "sh"));
      assert.equal(sh.mode & 0o6000, 0, `the host copy has mode ${sh.mode.toString(8)}`);
      for (const name of await readdir(volume)) {
        const st = await lstat(path.join(volume, name));
        assert.ok(!st.isCharacterDevice() && !st.isBlockDevice(), `${name} is a device node on the host`);
      }
      assert.deepEqual(await leftovers(root), []);
    });
  },
);
