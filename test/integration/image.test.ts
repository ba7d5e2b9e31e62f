// Builds the real guest image (downloads the Debian kernel into /var/cache/kata-ts the first time).

import assert from "node:assert/strict";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { nullLogger } from "../../src/base/log.js";
import { QemuHypervisor } from "../../src/hypervisor/qemu/qemu.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { RealHostProbe } from "../../src/platform/probe.js";
import { buildGuestImage, defaultCacheDir, readGuestImage } from "../../src/image/guest-image.js";
import { requires } from "../helpers/requires.js";

/** Root, because the Debian packages are downloaded to /var/cache/kata-ts (the image itself goes to a temp dir). */
const builds = ["root", "image-build", "crun", "cpio", "erofs"] as const;

describe("buildGuestImage", () => {
  it(
    "builds a bootable kernel, initrd and tools disk, then skips the rebuild",
    { skip: requires(...builds), timeout: 600_000 },
    async () => {
      // A test is its own composition root: it builds the real runner.
      const runner = new NodeProcessRunner();
      const dir = await mkdtemp(join(tmpdir(), "kata-ts-image-"));
      try {
        const agentBundlePath = join(dir, "agent.mjs");
        await writeFile(agentBundlePath, 'console.log("agent");\n');
        const opts = { outputDir: join(dir, "out"), cacheDir: defaultCacheDir, agentBundlePath };

        const first = await buildGuestImage({ runner }, opts);
        const listed = await runner.run("cpio", ["-it", "--quiet", "-F", first.initrdPath], {
          maxOutputBytes: 1 << 22,
        });
        const head = Buffer.alloc(4);
        const fh = await open(first.kernelPath, "r");
        await fh.read(head, 0, 4, 0).finally(() => fh.close());
        // The erofs superblock sits at byte 1024 and starts with the magic 0xE0F5E1E2 (little-endian).
        const sb = Buffer.alloc(4);
        const disk = await open(first.toolsDiskPath, "r");
        await disk.read(sb, 0, 4, 1024).finally(() => disk.close());
        const verbose = await runner.run("cpio", ["-itv", "--quiet", "-F", first.initrdPath], {
          maxOutputBytes: 1 << 22,
        });
        const second = await buildGuestImage({ runner }, opts);

        assert.equal(first.rebuilt, true);
        assert.equal(listed.code, 0, listed.stderr);
        const names = new Set(listed.stdout.split("\n"));
        for (const p of [
          "init",
          "usr/bin/node",
          "usr/bin/crun",
          "opt/kata-ts/tools",
          "lib/modules/virtio_console.ko",
          "lib/modules/erofs.ko",
          "dev/console",
          "dev/null",
        ]) {
          assert.ok(names.has(p), `${p} in the initrd`);
        }
        for (const p of [
          "lib64/ld-linux-x86-64.so.2",
          "bin/busybox",
          "bin/sh",
          "sbin/init",
          "etc/kata-ts-image.json",
        ]) {
          assert.ok(names.has(p), `${p} in the initrd`);
        }
        assert.deepEqual([...head], [0x7f, 0x45, 0x4c, 0x46]);
        assert.equal(sb.readUInt32LE(0), 0xe0f5e1e2);
        assert.match(verbose.stdout, /usr\/bin\/node -> \/opt\/kata-ts\/tools\/usr\/bin\/node/);
        assert.match(first.kernelRelease, /^\d+\.\d+\.\d+-\d+-amd64$/);
        assert.equal(second.rebuilt, false);
        assert.equal(second.inputsHash, first.inputsHash);
        assert.deepEqual(await readGuestImage(opts.outputDir), {
          kernelPath: first.kernelPath,
          initrdPath: first.initrdPath,
          toolsDiskPath: first.toolsDiskPath,
          kernelRelease: first.kernelRelease,
          inputsHash: first.inputsHash,
          agentStart: "bundle",
        });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it(
    "builds the agent's startup snapshot in a VM of the new image",
    { skip: requires(...builds, "qemu"), timeout: 600_000 },
    async () => {
      const runner = new NodeProcessRunner();
      const probe = new RealHostProbe(process.env["PATH"] ?? "/usr/bin:/bin");
      const hypervisor = new QemuHypervisor({ runner, probe, logger: nullLogger }, { binary: "qemu-system-x86_64" });
      const dir = await mkdtemp(join(tmpdir(), "kata-ts-image-"));
      try {
        const agentBundlePath = join(dir, "agent.mjs");
        const agentSnapshotEntryPath = join(dir, "agent.cjs");
        await writeFile(agentBundlePath, 'console.log("agent");\n');
        await writeFile(
          agentSnapshotEntryPath,
          'require("node:v8").startupSnapshot.setDeserializeMainFunction(() => console.log("from snapshot"));\n',
        );
        const opts = {
          outputDir: join(dir, "out"),
          cacheDir: defaultCacheDir,
          agentBundlePath,
          agentSnapshotEntryPath,
        };

        const image = await buildGuestImage({ runner, hypervisor }, opts);
        const listed = await runner.run("cpio", ["-it", "--quiet", "-F", image.initrdPath], {
          maxOutputBytes: 1 << 22,
        });

        assert.equal(image.agentStart, "snapshot");
        const names = new Set(listed.stdout.split("\n"));
        for (const p of ["opt/kata-ts/agent.blob", "opt/kata-ts/start-agent", "opt/kata-ts/kata-ts-agent.mjs"]) {
          assert.ok(names.has(p), `${p} in the initrd`);
        }
        assert.ok(!names.has("opt/kata-ts/kata-ts-agent.cjs"), "the snapshot entry stays in the builder's initrd");
        assert.equal((await readGuestImage(opts.outputDir))?.agentStart, "snapshot");
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
