// The density settings docs/factory.md#memory-per-pod gives for cold pods (the set `npm run bench --
// factory` measures) make a working pod: real QEMU with them on its command line, the real guest agent
// and crun, the container's output back, and nothing left.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { densitySettings } from "../../bench/factory.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, removeRunRoot, runCli, runCliToFiles } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const skip = requires("root", "qemu", "image");
const vmTimeout = 240_000;
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };

describe("density settings (real VM)", { skip }, () => {
  let work = "";
  let root = "";
  let config = "";
  const runner = new NodeProcessRunner();

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-density-"));
    root = await makeRunRoot();
    config = path.join(work, "configuration.toml");
    await writeFile(config, `[hypervisor.qemu]\n${densitySettings}`);
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  it(
    "boots a 512 MiB guest with TCG's code capped and the balloon, and runs a container",
    { timeout: vmTimeout },
    async () => {
      const id = "density1";
      const dir = await makeBusyboxBundle({ runner }, { dir: path.join(work, id), args: ["sleep", "600"] });
      const cli = (...args: string[]): ReturnType<typeof runCli> =>
        runCli(["--root", root, "--config", config, ...args], { env, timeoutMs: vmTimeout });
      try {
        // create's stdio stays with the container's process (as runc's): files, not pipes to wait on.
        const created = await runCliToFiles(["--root", root, "--config", config, "create", "--bundle", dir, id], work, {
          env,
        });
        assert.equal(created.code, 0, created.stderr);
        assert.equal((await cli("start", id)).code, 0);
        const pid = Number((await readFile(path.join(root, "vm", id, "qemu.pid"), "utf8")).trim());
        const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
        const exec = await cli(
          "exec",
          id,
          "--",
          "sh",
          "-c",
          "sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo",
        );

        assert.equal(argv[argv.indexOf("-m") + 1], "512M");
        // tcg_tb_size applies to TCG only (this machine has no VT-x; a KVM host gets plain "kvm").
        const accel = argv[argv.indexOf("-accel") + 1];
        assert.ok(accel === "tcg,tb-size=32" || accel === "kvm", argv.join(" "));
        assert.ok(
          argv.some((a) => a.startsWith("virtio-balloon-device,") && a.includes("free-page-reporting=on")),
          argv.join(" "),
        );
        assert.equal(exec.code, 0, exec.stderr);
        // The guest kernel keeps ~55 MiB of 512 for itself (struct page, its image): what is left is the guest's.
        const memMiB = Number(exec.stdout.toString().trim()) / 1024;
        assert.ok(memMiB > 400 && memMiB < 512, `guest MemTotal ${memMiB} MiB`);
      } finally {
        await cli("delete", "--force", id);
      }
      assert.deepEqual(await leftovers(root), []);
    },
  );
});
