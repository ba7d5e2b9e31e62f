import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { deferred } from "../base/async.js";
import { isKataError } from "../base/errors.js";
import type { Hypervisor, Vm, VmConfig } from "../hypervisor/hypervisor.js";
import type { ExitStatus } from "../platform/process.js";
import { buildAgentSnapshot } from "./agent-snapshot.js";
import { snapshotBuiltLine, toolsDiskSerial } from "./guest-init.js";

/** A VM whose guest "runs" `guest` against the share directory, then powers off (or never does). */
class FakeHypervisor implements Hypervisor {
  readonly name = "fake";
  readonly configs: VmConfig[] = [];
  stopped = 0;

  readonly #guest: (shareDir: string) => Promise<{ console: string; exits: boolean }>;

  constructor(guest: (shareDir: string) => Promise<{ console: string; exits: boolean }>) {
    this.#guest = guest;
  }

  async startVm(config: VmConfig): Promise<Vm> {
    this.configs.push(config);
    const exited = deferred<ExitStatus>();
    // CAST: the builder always passes a share directory.
    const run = await this.#guest(config.sharedDir as string);
    if (run.exits) exited.resolve({ code: 0, signal: null });
    return {
      id: config.id,
      pid: 1,
      agentSocketPath: "/nonexistent",
      consoleLogPath: "/nonexistent",
      exited: exited.promise,
      consoleTail: () => Promise.resolve(run.console),
      onAgentChannelClosed: () => () => undefined,
      pause: () => Promise.resolve(),
      resume: () => Promise.resolve(),
      stop: () => {
        this.stopped++;
        return Promise.resolve();
      },
    };
  }
}

describe("buildAgentSnapshot", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "kata-ts-snapshot-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const build = (name: string) => ({
    kernelPath: "/k/vmlinux",
    initrdPath: "/k/initrd.img",
    toolsDiskPath: "/k/tools.erofs",
    workDir: join(dir, name),
  });

  it("boots the image with its tools disk and a share, and returns the snapshot the guest wrote there", async () => {
    const hv = new FakeHypervisor(async (share) => {
      await writeFile(join(share, "agent.blob"), "blob");
      return { console: `kata-ts init: ...\n${snapshotBuiltLine}\n`, exits: true };
    });

    const blob = await buildAgentSnapshot(hv, build("ok"));

    assert.equal(blob, join(dir, "ok", "share", "agent.blob"));
    const config = hv.configs[0];
    assert.ok(config);
    assert.deepEqual(config.readonlyDisks, [{ path: "/k/tools.erofs", serial: toolsDiskSerial }]);
    assert.equal(config.sharedDir, join(dir, "ok", "share"));
    assert.equal(config.initrdPath, "/k/initrd.img");
    assert.equal(hv.stopped, 1);
  });

  it("fails with the console when the guest powers off without a snapshot", async () => {
    const hv = new FakeHypervisor(() => Promise.resolve({ console: "kata-ts snapshot: failed\n", exits: true }));

    await assert.rejects(
      buildAgentSnapshot(hv, build("none")),
      (e) => isKataError(e, "INTERNAL") && e.message.includes("kata-ts snapshot: failed"),
    );
    assert.equal(hv.stopped, 1);
  });

  it("gives up on a guest that never powers off, and stops the VM", async () => {
    const hv = new FakeHypervisor(() => Promise.resolve({ console: "stuck\n", exits: false }));

    await assert.rejects(
      buildAgentSnapshot(hv, { ...build("hang"), timeoutMs: 50 }),
      (e) => isKataError(e, "DEADLINE_EXCEEDED") && e.message.includes("stuck"),
    );
    assert.equal(hv.stopped, 1);
  });
});
