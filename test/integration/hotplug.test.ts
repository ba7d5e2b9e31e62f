// A container joining a running pod gets its CPUs and memory hot-added (q35): real QEMU under TCG, the
// real guest agent (OnlineCPUMem) and crun. One VM: the sandbox container reports the VM's size at
// boot, the second container (2 vCPUs of quota, 512 MiB limit) reports it after the hotplug, and an
// exec reports it after `update` raised the sandbox container's limits.

import assert from "node:assert/strict";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { delay } from "../../src/base/async.js";
import { ignoreErrno } from "../../src/base/errors.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import type { Spec } from "../../src/oci/spec.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCli } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const vmTimeout = 300_000;
const mib = 1024 * 1024;
const cri = (type: "sandbox" | "container", sandboxId: string): Record<string, string> => ({
  "io.kubernetes.cri.container-type": type,
  "io.kubernetes.cri.sandbox-id": sandboxId,
});
/** What a container prints: its CPUs (affinity and the guest's online list) and MemTotal in KiB. */
const report =
  "echo nproc=$(nproc) online=$(cat /sys/devices/system/cpu/online) mem=$(sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo)";

function parseReport(text: string): { nproc: number; online: string; memMiB: number } {
  const m = /nproc=(\d+) online=(\S+) mem=(\d+)/.exec(text);
  assert.ok(m !== null, `no report in ${JSON.stringify(text)}`);
  return { nproc: Number(m[1]), online: m[2] ?? "", memMiB: Number(m[3]) / 1024 };
}

describe(
  "CPU and memory hotplug for a container joining a pod (real VM, q35)",
  { skip: requires("root", "qemu", "image", "netns") },
  () => {
    let work = "";
    let root = "";
    let config = "";
    const sid = `h-hp${process.pid}`;
    const cid = `h-hpc${process.pid}`;

    const cli = (...args: string[]): ReturnType<typeof runCli> =>
      runCli(["--root", root, "--config", config, "--log", path.join(work, "kata.log"), ...args], {
        env,
        timeoutMs: vmTimeout,
      });

    before(async () => {
      work = await mkdtemp(path.join(tmpdir(), "kata-ts-hotplug-"));
      root = await makeRunRoot();
      config = path.join(work, "configuration.toml");
      await writeFile(
        config,
        [
          "[hypervisor.qemu]",
          'machine_type = "q35"',
          "default_vcpus = 1",
          "default_maxvcpus = 4",
          "default_memory = 384",
          "default_maxmemory = 2048",
          "",
        ].join("\n"),
      );
    });

    after(async () => {
      await cli("delete", "--force", cid);
      await cli("delete", "--force", sid);
      await removeRunRoot(root);
      await rm(work, { recursive: true, force: true });
    });

    async function bundle(name: string, script: string, edit: (s: Spec) => void): Promise<string> {
      return makeBusyboxBundle({ runner }, { dir: path.join(work, name), args: ["sh", "-c", script], edit });
    }

    /** create with stdio to files: the container keeps the caller's stdout (as with runc). */
    async function createTo(dir: string, id: string, out: string): Promise<{ code: number | null; stderr: string }> {
      const fd = await open(out, "a");
      const efd = await open(`${out}.err`, "a");
      try {
        const r = await runCli(
          ["--root", root, "--config", config, "--log", path.join(work, "kata.log"), "create", "--bundle", dir, id],
          { env, timeoutMs: vmTimeout, stdoutFd: fd.fd, stderrFd: efd.fd },
        );
        return { code: r.code, stderr: await readFile(`${out}.err`, "utf8") };
      } finally {
        await fd.close();
        await efd.close();
      }
    }

    async function waitForReport(file: string): Promise<string> {
      for (let i = 0; i < 600; i++) {
        const text = (await readFile(file, "utf8").catch(ignoreErrno("ENOENT"))) ?? "";
        if (text.includes("mem=")) return text;
        await delay(100);
      }
      throw new Error(`no report in ${file}`);
    }

    it(
      "hot-adds 2 vCPUs and 512 MiB, which the container sees, and leaves nothing after delete",
      { timeout: vmTimeout },
      async (t) => {
        const podDir = await bundle("pod", `${report}; while true; do sleep 1; done`, (s) => {
          s.annotations = cri("sandbox", sid);
        });
        const appDir = await bundle("app", report, (s) => {
          s.annotations = cri("container", sid);
          s.linux ??= {};
          s.linux.resources = {
            ...s.linux.resources,
            cpu: { quota: 200_000, period: 100_000 },
            memory: { limit: 512 * mib },
          };
        });

        const podOut = path.join(work, "pod.out");
        const appOut = path.join(work, "app.out");
        const created = await createTo(podDir, sid, podOut);
        assert.equal(created.code, 0, created.stderr);
        assert.equal((await cli("start", sid)).code, 0);
        const bootText = await waitForReport(podOut);
        const boot = parseReport(bootText);
        assert.equal(boot.nproc, 1, bootText);

        const app = await createTo(appDir, cid, appOut);
        assert.equal(app.code, 0, app.stderr);
        assert.equal((await cli("start", cid)).code, 0);
        const w = await cli("wait", cid);
        assert.match(w.stdout.toString(), /^0 /, `${w.stdout.toString()} ${w.stderr}`);
        const afterText = await waitForReport(appOut);
        const grown = parseReport(afterText);

        assert.equal(grown.nproc, 3, afterText);
        assert.equal(grown.online, "0-2");
        const added = grown.memMiB - boot.memMiB;
        t.diagnostic(
          `boot: ${boot.nproc} CPUs, ${boot.memMiB} MiB; after: ${grown.nproc} CPUs (${grown.online}), ${grown.memMiB} MiB`,
        );
        // The hot-added blocks count whole in MemTotal, less their struct pages when the kernel puts them there.
        assert.ok(added > 480 && added <= 512, `MemTotal grew by ${added} MiB (${boot.memMiB} -> ${grown.memMiB})`);
        const grownLine = (await readFile(path.join(work, "kata.log"), "utf8"))
          .split("\n")
          .find((l) => l.includes("pod VM grown"));
        assert.ok(grownLine !== undefined, "no 'pod VM grown' in the log");
        t.diagnostic(grownLine);
        assert.equal((await cli("state", sid)).code, 0);

        // update raises the sandbox container's limits: the app has stopped and no longer counts, so the
        // pod needs 1 + 3 vCPUs and 384 + 768 MiB: one more vCPU and a 256 MiB DIMM.
        const upd = await cli("update", "--cpu-quota", "300000", "--cpu-period", "100000", "--memory", "768m", sid);
        assert.equal(upd.code, 0, upd.stderr);
        const ex = await cli("exec", sid, "--", "sh", "-c", report);
        assert.equal(ex.code, 0, ex.stderr);
        const updated = parseReport(ex.stdout.toString());
        t.diagnostic(`after update: ${updated.nproc} CPUs (${updated.online}), ${updated.memMiB} MiB`);
        assert.equal(updated.online, "0-3");
        assert.equal(updated.nproc, 4);
        assert.equal(updated.memMiB - grown.memMiB, 256);

        assert.equal((await cli("delete", cid)).code, 0);
        assert.equal((await cli("delete", "--force", sid)).code, 0);
        assert.deepEqual(await leftovers(root), []);
        assert.deepEqual(await netnsLeft([sid]), []);
      },
    );
  },
);
