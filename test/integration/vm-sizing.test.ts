// The VM is sized to its container (Kata's rule: default_vcpus + ceil(quota/period), default_memory + the
// limit, capped by default_maxvcpus / default_maxmemory), and the guest's logs reach the host log when
// debugging: real QEMU, the real guest agent, real crun.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import type { Spec } from "../../src/oci/spec.js";
import { failedBootsDirName } from "../../src/sandbox/boot-console.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCli, runCliToFiles } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const skip = requires("root", "qemu", "image");
const vmTimeout = 240_000;
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const gib = 1024 ** 3;

/** default_memory and the caps of the tests' configuration (MiB). */
const defaultMemory = 512;
const maxMemory = 2048;
const maxVcpus = 4;

/** MemTotal is the RAM less what the kernel keeps for itself (its image, page tables, ...): well under this. */
const kernelReservedMaxMiB = 200;

function withResources(quota: number, period: number, limit: number): (s: Spec) => void {
  return (s) => {
    s.linux ??= {};
    s.linux.resources = { ...s.linux.resources, cpu: { quota, period }, memory: { limit } };
  };
}

describe("VM sizing and guest logs (real VM)", { skip }, () => {
  let work = "";
  let root = "";
  let config = "";
  const runner = new NodeProcessRunner();

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-sizing-"));
    root = await makeRunRoot();
    config = path.join(work, "configuration.toml");
    await writeFile(
      config,
      [
        "[hypervisor.qemu]",
        "default_vcpus = 1",
        `default_maxvcpus = ${maxVcpus}`,
        `default_memory = ${defaultMemory}`,
        `default_maxmemory = ${maxMemory}`,
        // A Kata key kata-ts ignores: its warning is printed once by each command that loads the file.
        "enable_iommu = false",
        "[agent.kata]",
        "enable_debug = true",
        "",
      ].join("\n"),
    );
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  async function bundle(name: string, script: string, edit?: (s: Spec) => void): Promise<string> {
    return makeBusyboxBundle(
      { runner },
      { dir: path.join(work, name), args: ["sh", "-c", script], ...(edit === undefined ? {} : { edit }) },
    );
  }

  /** `run` of the bundle: the guest's nproc and MemTotal (MiB), and the host log it wrote. */
  async function sized(id: string, edit: (s: Spec) => void): Promise<{ nproc: number; memMiB: number; log: string }> {
    const dir = await bundle(id, "nproc; sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo", edit);
    const logFile = path.join(work, `${id}.log`);
    const r = await runCli(["--root", root, "--config", config, "--log", logFile, "run", "--bundle", dir, id], {
      env,
      timeoutMs: vmTimeout,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      `kata-ts: warning: ${config}: [hypervisor.qemu] enable_iommu: Kata option not supported by kata-ts, ignored\n`,
    );
    assert.deepEqual(await leftovers(root), [], `leftovers after ${id}`);
    assert.deepEqual(await netnsLeft([id]), [], `network namespace left after ${id}`);
    const [nproc = "", memKiB = ""] = r.stdout.toString().trim().split("\n");
    return { nproc: Number(nproc), memMiB: Number(memKiB) / 1024, log: await readFile(logFile, "utf8") };
  }

  it("adds a 2-vCPU quota and a 1 GiB limit to the defaults", { timeout: vmTimeout }, async () => {
    const s = await sized("s-size", withResources(200_000, 100_000, gib));

    assert.equal(s.nproc, 1 + 2);
    const ram = defaultMemory + 1024;
    assert.ok(s.memMiB <= ram && s.memMiB > ram - kernelReservedMaxMiB, `MemTotal ${s.memMiB} MiB for ${ram} MiB`);
    assert.doesNotMatch(s.log, /capped/);
  });

  it("caps at default_maxvcpus and default_maxmemory, and warns", { timeout: vmTimeout }, async () => {
    const s = await sized("s-cap", withResources(800_000, 100_000, 8 * gib));

    assert.equal(s.nproc, maxVcpus);
    assert.ok(
      s.memMiB <= maxMemory && s.memMiB > maxMemory - kernelReservedMaxMiB,
      `MemTotal ${s.memMiB} MiB for ${maxMemory} MiB`,
    );
    assert.match(s.log, /warn vm sizing .*needs 9 vCPUs .*capped at 4 \(default_maxvcpus\)/);
    assert.match(s.log, /warn vm sizing .*needs 8704 MiB .*capped at 2048 MiB \(default_maxmemory\)/);
  });

  it(
    "with enable_debug, writes the agent's log lines with the sandbox id into the host log",
    { timeout: vmTimeout },
    async () => {
      const id = "s-logs";
      const dir = await bundle(id, "true");
      const logFile = path.join(work, `${id}.log`);
      const cli = (...args: string[]): ReturnType<typeof runCli> =>
        runCli(["--root", root, "--config", config, "--log-format", "json", "--log", logFile, ...args], {
          env,
          timeoutMs: vmTimeout,
        });
      try {
        const created = await runCliToFiles(
          ["--root", root, "--config", config, "--log-format", "json", "--log", logFile, "create", "--bundle", dir, id],
          work,
          { env, timeoutMs: vmTimeout },
        );
        assert.equal(created.code, 0, created.stderr);
        assert.equal((await cli("start", id)).code, 0);
      } finally {
        assert.equal((await cli("delete", "--force", id)).code, 0);
      }
      const lines = (await readFile(logFile, "utf8"))
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const agent = lines.filter((l) => l["source"] === "agent");
      const created = agent.find((l) => l["msg"] === "container created");
      assert.ok(created, `no agent "container created" line among ${agent.length} agent lines`);
      assert.equal(created["sandboxId"], id);
      assert.equal(created["containerId"], id);
      assert.ok(agent.every((l) => l["sandboxId"] === id));
      // agent.log=debug reached the agent: it logs at debug level.
      assert.ok(
        agent.some((l) => l["guestLevel"] === "debug"),
        "no debug line from the agent",
      );
      // The agent started from the image's snapshot, interpreted only (guest-init.ts agentNodeFlags).
      const serving = agent.find((l) => l["msg"] === "serving");
      assert.ok(serving, `no agent "serving" line among ${agent.length} agent lines`);
      // The guest's own fields, which the host keeps apart from its own (guest-log.ts).
      const guest = serving["guest"] as Record<string, unknown> | undefined;
      assert.deepEqual([guest?.["startedFrom"], guest?.["jitless"]], ["snapshot", true]);
      // The kernel's own console lines come too.
      assert.ok(lines.some((l) => l["source"] === "console" && l["sandboxId"] === id));
      assert.deepEqual(await leftovers(root), []);
    },
  );

  it("keeps the console of a failed boot and names it in the error", { timeout: vmTimeout }, async () => {
    const id = "s-panic";
    const panicConfig = path.join(work, "panic.toml");
    // No init in the initrd: the kernel panics (its message is printed even at the quiet default log
    // level), and QEMU (-no-reboot, panic=1) exits.
    await writeFile(panicConfig, '[hypervisor.qemu]\nkernel_params = "rdinit=/kata-ts-no-such-init"\n');
    const dir = await bundle(id, "true");

    const r = await runCli(["--root", root, "--config", panicConfig, "run", "--bundle", dir, id], {
      env,
      timeoutMs: vmTimeout,
    });

    assert.notEqual(r.code, 0);
    const kept = path.join(root, failedBootsDirName, `${id}.console.log`);
    assert.ok(r.stderr.includes(`(all of it, capped, in ${kept})`), r.stderr);
    assert.match(await readFile(kept, "utf8"), /Kernel panic/);
    assert.deepEqual(await leftovers(root), []);
  });
});
