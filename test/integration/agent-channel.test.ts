// The agent channel on a real VM: the host may close its end of the virtio-serial port and open it
// again (a restarted service, a VM restored from a template), and the agent serves the new
// connection; a request still in the guest when the host went away does not wedge it.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { AgentClient } from "../../src/agent-client/agent-client.js";
import { deadline } from "../../src/base/async.js";
import { nullLogger } from "../../src/base/log.js";
import { QemuHypervisor } from "../../src/hypervisor/qemu/qemu.js";
import { toolsDiskSerial } from "../../src/image/guest-init.js";
import { readGuestImage } from "../../src/image/guest-image.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { RealHostProbe } from "../../src/platform/probe.js";
import { requires, testImageDir } from "../helpers/requires.js";

describe("agent channel (real VM)", { skip: requires("root", "qemu", "image") }, () => {
  it("serves a new connection after the host closed the old one", { timeout: 120_000 }, async () => {
    const image = await readGuestImage(testImageDir);
    assert.ok(image);
    const work = await mkdtemp(path.join(tmpdir(), "kata-ts-chan-"));
    const runner = new NodeProcessRunner();
    const hv = new QemuHypervisor(
      { runner, probe: new RealHostProbe(process.env["PATH"] ?? ""), logger: nullLogger },
      { binary: "qemu-system-x86_64" },
    );
    const boot = deadline(90_000);
    const vm = await hv.startVm(
      {
        id: "chan",
        vmDir: path.join(work, "vm"),
        machineType: "microvm",
        vcpus: 1,
        memoryMiB: 1024,
        kernelPath: image.kernelPath,
        initrdPath: image.initrdPath,
        readonlyDisks: [{ path: image.toolsDiskPath, serial: toolsDiskSerial }],
        kernelParams: ["panic=1"],
      },
      boot.signal,
    );
    try {
      const first = await AgentClient.connect(vm.agentSocketPath, { signal: boot.signal });
      await first.waitReady(boot.signal);
      // Leave a request pending in the guest (a read of a container that does not exist fails fast;
      // a wait on nothing would not), then drop the connection under it.
      const pending = first.agent.waitProcess({ containerId: "nosuch", execId: "" }).catch((e: unknown) => e);
      await first.close();
      assert.ok(await pending);

      for (let round = 0; round < 3; round++) {
        const again = await AgentClient.connect(vm.agentSocketPath, { signal: boot.signal });
        await again.waitReady(boot.signal);
        const version = await again.health.version({ service: "" }, { timeoutMs: 20_000 });
        assert.match(version.agentVersion, /kata-ts-agent/);
        await again.close();
      }
    } finally {
      boot.clear();
      await vm.stop();
      await rm(work, { recursive: true, force: true });
    }
  });
});
