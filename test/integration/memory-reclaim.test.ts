// reclaim_guest_freed_memory: memory a container used and freed goes back to the host (a free-page-
// reporting balloon), where without it QEMU keeps every guest page it ever touched; and the density
// settings docs/factory.md#memory-per-pod gives for cold pods (the set `npm run bench -- factory`
// measures) make a working pod. Real QEMU, the real guest kernel's virtio_balloon, real crun.

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
import { eventually } from "../helpers/vm-world.js";

const skip = requires("root", "qemu", "image");
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const mib = 1024 * 1024;
/** What the container allocates, touches and frees (busybox tail -c keeps its whole window in memory). */
const allocBytes = 200 * mib;

/** QEMU's anonymous memory: guest RAM it has backed, plus TCG's code buffer (which only grows). */
async function anonMiB(pid: number): Promise<number> {
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = /^Anonymous:\s+(\d+) kB$/m.exec(rollup)?.[1];
  assert.ok(kb !== undefined, "smaps_rollup has Anonymous");
  return Number(kb) / 1024;
}

/** `create` + `start` of a bundle; the pod's QEMU pid and command line. */
async function startDetached(
  root: string,
  config: string,
  work: string,
  dir: string,
  id: string,
): Promise<{ pid: number; argv: string[] }> {
  // create's stdio stays with the container's process (as runc's): files, not pipes to wait on.
  const created = await runCliToFiles(["--root", root, "--config", config, "create", "--bundle", dir, id], work, {
    env,
  });
  assert.equal(created.code, 0, created.stderr);
  assert.equal((await runCli(["--root", root, "--config", config, "start", id], { env })).code, 0);
  const pid = Number((await readFile(path.join(root, "vm", id, "qemu.pid"), "utf8")).trim());
  return { pid, argv: (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0") };
}

describe("guest memory reclaim (real VM)", { skip }, () => {
  let work = "";
  let root = "";
  let config = "";
  const runner = new NodeProcessRunner();

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-reclaim-"));
    root = await makeRunRoot();
    config = path.join(work, "configuration.toml");
    await writeFile(config, "[hypervisor.qemu]\ndefault_memory = 1024\nreclaim_guest_freed_memory = true\n");
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  it("gives the host back what a container allocated and freed", { timeout: 420_000 }, async () => {
    const id = "reclaim1";
    const dir = await makeBusyboxBundle({ runner }, { dir: path.join(work, id), args: ["sleep", "600"] });
    const cli = (...args: string[]): ReturnType<typeof runCli> =>
      runCli(["--root", root, "--config", config, ...args], { env });
    try {
      const { pid, argv } = await startDetached(root, config, work, dir, id);
      const cmdline = argv.join(" ");
      const before = await anonMiB(pid);

      // Copying it through tail under TCG took over 120 s in a CI run on a loaded host: no tight deadline.
      const used = await runCli(
        [
          "--root",
          root,
          "--config",
          config,
          "exec",
          id,
          "--",
          "sh",
          "-c",
          `head -c ${allocBytes} /dev/zero | tail -c ${allocBytes} | wc -c`,
        ],
        { env, timeoutMs: 240_000 },
      );
      const peak = await anonMiB(pid);
      // The guest reports free pages in 2 MiB blocks a couple of seconds after they are freed.
      let now = peak;
      const returned = await eventually(async () => {
        now = await anonMiB(pid);
        return peak - now >= allocBytes / mib / 2;
      }, 120_000);

      assert.match(cmdline, /virtio-balloon-device,id=balloon0,free-page-reporting=on/);
      assert.equal(used.code, 0, used.stderr);
      assert.equal(used.stdout.toString().trim(), String(allocBytes));
      assert.ok(peak - before >= allocBytes / mib / 2, `QEMU grew ${peak - before} MiB for the allocation`);
      assert.ok(returned, `QEMU's anonymous memory: ${before} MiB before, ${peak} MiB at the peak, ${now} MiB after`);
    } finally {
      await cli("delete", "--force", id);
    }
    assert.deepEqual(await leftovers(root), []);
  });
});

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
    { timeout: 240_000 },
    async () => {
      const id = "density1";
      const dir = await makeBusyboxBundle({ runner }, { dir: path.join(work, id), args: ["sleep", "600"] });
      const cli = (...args: string[]): ReturnType<typeof runCli> =>
        runCli(["--root", root, "--config", config, ...args], { env, timeoutMs: 240_000 });
      try {
        const { argv } = await startDetached(root, config, work, dir, id);
        const memInfo = await cli(
          "exec",
          id,
          "--",
          "sed",
          "-n",
          "s/^MemTotal: *\\([0-9]*\\) kB$/\\1/p",
          "/proc/meminfo",
        );

        assert.equal(argv[argv.indexOf("-m") + 1], "512M");
        // tcg_tb_size applies to TCG only (this machine has no VT-x; a KVM host gets plain "kvm").
        const accel = argv[argv.indexOf("-accel") + 1];
        assert.ok(accel === "tcg,tb-size=32" || accel === "kvm", argv.join(" "));
        assert.ok(
          argv.some((a) => a.startsWith("virtio-balloon-device,") && a.includes("free-page-reporting=on")),
          argv.join(" "),
        );
        assert.equal(memInfo.code, 0, memInfo.stderr);
        // The guest kernel keeps ~55 MiB of 512 for itself (struct page, its image): the rest is the guest's.
        const memMiB = Number(memInfo.stdout.toString().trim()) / 1024;
        assert.ok(memMiB > 400 && memMiB < 512, `guest MemTotal ${memMiB} MiB`);
      } finally {
        await cli("delete", "--force", id);
      }
      assert.deepEqual(await leftovers(root), []);
    },
  );
});
