// The QEMU driver against a fake QEMU: a small node script that serves the console and QMP sockets named on
// its command line. Covers startup, the console relay and cap, and teardown that never hangs.

import assert from "node:assert/strict";
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { delay } from "../../base/async.js";
import { Code, KataError, isKataError } from "../../base/errors.js";
import { nullLogger } from "../../base/log.js";
import type { HostProbe } from "../../platform/probe.js";
import { NodeProcessRunner, type ProcessRunner } from "../../platform/process.js";
import type { Vm, VmConfig } from "../hypervisor.js";
import { QemuHypervisor } from "./qemu.js";
import { quitDeadlineMs } from "./qemu-vm.js";

/** quit-ok: answers every command, exits on quit. ignore-qmp: never answers quit, stop or cont. flood-exit:
 * once QMP is negotiated, writes 1 MiB to the console, then exits. */
type Mode = "quit-ok" | "ignore-qmp" | "flood-exit";

function fakeQemu(mode: Mode): string {
  return `#!/usr/bin/env node
import net from "node:net";
const mode = ${JSON.stringify(mode)};
const argv = process.argv.slice(2);
const values = (flag) => argv.flatMap((a, i) => (a === flag ? [argv[i + 1]] : []));
const qmpPath = /^unix:([^,]*)/.exec(values("-qmp")[0])[1];
const consolePath = /path=([^,]*)/.exec(values("-chardev").find((v) => v.startsWith("socket,id=console,")))[1];
let consoleConn;
// flood-exit floods only once the driver holds QMP too: a QEMU that exits before that failed to start.
const flood = () => {
  const line = "x".repeat(1023) + "\\n";
  for (let i = 0; i < 1024; i++) consoleConn.write(line);
  consoleConn.end(() => process.exit(0));
};
net.createServer((c) => {
  c.on("error", () => undefined);
  consoleConn = c;
  if (mode !== "flood-exit") c.write("[    0.000000] Linux version 6.1\\r\\nhello from ttyS0\\r\\n");
}).listen(consolePath);
net.createServer((c) => {
  c.on("error", () => undefined);
  const send = (o) => c.write(JSON.stringify(o) + "\\r\\n");
  send({ QMP: { version: {}, capabilities: [] } });
  let buf = "";
  c.on("data", (d) => {
    buf += d;
    for (let nl = buf.indexOf("\\n"); nl >= 0; nl = buf.indexOf("\\n")) {
      const msg = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (mode === "ignore-qmp" && ["quit", "stop", "cont"].includes(msg.execute)) continue;
      send({ return: {}, id: msg.id });
      if (msg.execute === "quit") process.exit(0);
      if (mode === "flood-exit" && msg.execute === "qmp_capabilities") flood();
    }
  });
}).listen(qmpPath);
`;
}

const probe: HostProbe = {
  kvmUsable: () => false,
  kvmProblem: () => "test",
  cpuinfo: () => "",
  which: () => undefined,
  cpuCount: () => 1,
  memTotalMiB: () => 1024,
};

const testTimeoutMs = 20_000;

describe("QemuHypervisor with a fake QEMU", () => {
  let dir = "";
  const vms: Vm[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "qemu-test-"));
    for (const f of ["vmlinux", "initrd"]) await writeFile(join(dir, f), "");
  });

  afterEach(async () => {
    for (const vm of vms.splice(0)) await vm.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function start(mode: Mode, opts: { consoleLogMaxBytes?: number } = {}): Promise<{ vm: Vm; vmDir: string }> {
    const binary = join(dir, `fake-qemu-${mode}.mjs`);
    await writeFile(binary, fakeQemu(mode));
    await chmod(binary, 0o755);
    const hv = new QemuHypervisor(
      { runner: new NodeProcessRunner(), probe, logger: nullLogger },
      { binary, controlTimeoutMs: 10_000, ...opts },
    );
    const vmDir = join(dir, "vm");
    const config: VmConfig = {
      id: "sb1",
      vmDir,
      machineType: "microvm",
      vcpus: 1,
      memoryMiB: 128,
      kernelPath: join(dir, "vmlinux"),
      initrdPath: join(dir, "initrd"),
      kernelParams: [],
    };
    const vm = await hv.startVm(config, AbortSignal.timeout(testTimeoutMs));
    vms.push(vm);
    return { vm, vmDir };
  }

  it("relays the guest console into console.log and stops with QMP quit", { timeout: testTimeoutMs }, async () => {
    const { vm, vmDir } = await start("quit-ok");

    await vm.pause();
    await vm.resume();
    // The fake writes on connect; the relay may not have read it yet.
    let tail = await vm.consoleTail(1);
    while (!tail.includes("hello")) {
      await delay(10);
      tail = await vm.consoleTail(1);
    }
    await vm.stop();

    assert.equal(tail, "hello from ttyS0");
    assert.deepEqual(await vm.exited, { code: 0, signal: null });
    await assert.rejects(stat(vmDir), { code: "ENOENT" });
  });

  it(
    "SIGKILLs a QEMU that does not answer quit, once the quit deadline passes",
    { timeout: testTimeoutMs },
    async () => {
      const { vm } = await start("ignore-qmp");
      const t0 = Date.now();

      const stopping = vm.stop();
      await stopping;

      assert.equal(vm.stop(), stopping, "stop() is idempotent");
      assert.deepEqual(await vm.exited, { code: null, signal: "SIGKILL" });
      assert.ok(Date.now() - t0 >= quitDeadlineMs - 50, "quit got its deadline first");
    },
  );

  it("stops a SIGSTOPped QEMU", { timeout: testTimeoutMs }, async () => {
    const { vm, vmDir } = await start("quit-ok");
    process.kill(vm.pid, "SIGSTOP");

    await vm.stop();

    assert.deepEqual(await vm.exited, { code: null, signal: "SIGKILL" });
    await assert.rejects(stat(vmDir), { code: "ENOENT" });
  });

  it("gives up pause with DEADLINE_EXCEEDED when QEMU never answers", { timeout: testTimeoutMs }, async () => {
    const { vm } = await start("ignore-qmp");

    await assert.rejects(vm.pause(), (e) => isKataError(e, "DEADLINE_EXCEEDED"));
  });

  it("keeps at most the cap in console.log and console.log.1", { timeout: testTimeoutMs }, async () => {
    const cap = 64 * 1024;
    const { vm, vmDir } = await start("flood-exit", { consoleLogMaxBytes: cap });

    await vm.exited;
    const tail = await vm.consoleTail(1);
    const files = (await readdir(vmDir)).filter((f) => f.startsWith("console.log")).sort();
    const sizes = await Promise.all(files.map(async (f) => (await stat(join(vmDir, f))).size));

    assert.deepEqual(files, ["console.log", "console.log.1"]);
    for (const size of sizes) assert.ok(size > 0 && size <= cap, `${size} bytes`);
    assert.match(tail, /^x+$/);
  });

  it("starts QEMU in the netns with a netdev and a NIC per VmNic", async () => {
    let spawned: readonly string[] = [];
    const runner: ProcessRunner = {
      run: () => Promise.reject(new KataError(Code.Unimplemented, "not used")),
      spawn: (file, args) => {
        spawned = [file, ...args];
        return Promise.reject(new KataError(Code.Unavailable, "recorded only"));
      },
    };
    const hv = new QemuHypervisor({ runner, probe, logger: nullLogger }, { binary: "qemu-system-x86_64" });

    await assert.rejects(
      hv.startVm(
        {
          id: "sb1",
          vmDir: join(dir, "vm"),
          machineType: "microvm",
          vcpus: 1,
          memoryMiB: 128,
          kernelPath: join(dir, "vmlinux"),
          initrdPath: join(dir, "initrd"),
          kernelParams: [],
          netnsPath: "/var/run/netns/pod1",
          nics: [{ tapName: "tap0_kata", mac: "02:42:0a:58:00:05" }],
        },
        AbortSignal.timeout(testTimeoutMs),
      ),
      /recorded only/,
    );

    assert.deepEqual(spawned.slice(0, 3), ["nsenter", "--net=/var/run/netns/pod1", "--"]);
    assert.ok(spawned.includes("tap,id=net0,ifname=tap0_kata,script=no,downscript=no,vhost=off"));
    assert.ok(spawned.includes("virtio-net-device,netdev=net0,mac=02:42:0a:58:00:05,id=nic0"));
  });
});
