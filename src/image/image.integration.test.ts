// Builds the real guest image (downloads the Debian kernel into /var/cache/kata-ts the first time).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { NodeProcessRunner } from "../platform/process.js";
import { buildGuestImage, defaultCacheDir, readGuestImage } from "./guest-image.js";

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return "needs root (writes /var/cache/kata-ts)";
  const tools: Record<string, string> = {
    "/usr/bin/dpkg-deb": "dpkg",
    "/usr/bin/apt-get": "apt",
    "/bin/busybox": "busybox-static",
    "/usr/bin/crun": "crun",
    "/usr/bin/cpio": "cpio",
    "/usr/bin/xz": "xz-utils",
  };
  const missing = Object.entries(tools).filter(([path]) => !existsSync(path));
  return missing.length === 0 ? false : `needs ${missing.map(([p, pkg]) => `${p} (${pkg})`).join(", ")}`;
}

describe("buildGuestImage", () => {
  it(
    "builds a bootable kernel and initrd, then skips the rebuild",
    { skip: skipReason(), timeout: 600_000 },
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
        const second = await buildGuestImage({ runner }, opts);

        assert.equal(first.rebuilt, true);
        assert.equal(listed.code, 0, listed.stderr);
        const names = new Set(listed.stdout.split("\n"));
        for (const p of [
          "init",
          "usr/bin/node",
          "usr/bin/crun",
          "lib/modules/virtio_console.ko",
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
        assert.match(first.kernelRelease, /^\d+\.\d+\.\d+-\d+-amd64$/);
        assert.equal(second.rebuilt, false);
        assert.equal(second.inputsHash, first.inputsHash);
        assert.deepEqual(await readGuestImage(opts.outputDir), {
          kernelPath: first.kernelPath,
          initrdPath: first.initrdPath,
          kernelRelease: first.kernelRelease,
          inputsHash: first.inputsHash,
        });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
