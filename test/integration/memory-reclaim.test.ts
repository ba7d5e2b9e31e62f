// reclaim_guest_freed_memory: memory a container used and freed goes back to the host (a free-page-
// reporting balloon), where without it QEMU keeps every guest page it ever touched. Real QEMU, the real
// guest kernel's virtio_balloon, real crun.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
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
      // create's stdio stays with the container's process (as runc's): files, not pipes to wait on.
      const created = await runCliToFiles(["--root", root, "--config", config, "create", "--bundle", dir, id], work, {
        env,
      });
      assert.equal(created.code, 0, created.stderr);
      assert.equal((await cli("start", id)).code, 0);
      const pid = Number((await readFile(path.join(root, "vm", id, "qemu.pid"), "utf8")).trim());
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
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
