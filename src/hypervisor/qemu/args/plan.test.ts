import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { isKataError } from "../../../base/errors.js";
import { agentPortName } from "../../../protocol/guest-paths.js";
import { fastKernelParams } from "../kernel-params.js";
import { planQemuArgs, type QemuVmConfig } from "./plan.js";

/** The repository root: the nearest ancestor with a package.json (works from src/ under tsx and from dist/). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    assert.notEqual(up, dir, "no package.json above the test file");
    dir = up;
  }
  return dir;
}

/** Compares argv with test/fixtures/golden/<name>.args (one argument per line); UPDATE_GOLDEN=1 rewrites it. */
function assertGolden(name: string, argv: readonly string[]): void {
  for (const a of argv) assert.ok(!a.includes("\n"), `argument with a newline cannot be stored one per line: ${a}`);
  const file = join(repoRoot(), "test", "fixtures", "golden", `${name}.args`);
  const actual = argv.join("\n") + "\n";
  if (process.env["UPDATE_GOLDEN"] === "1") writeFileSync(file, actual);
  assert.equal(actual, readFileSync(file, "utf8"), `golden ${file} differs (UPDATE_GOLDEN=1 rewrites it)`);
}

/** The value that follows the first occurrence of `flag`, or undefined. */
function valueOf(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i < 0 ? undefined : argv[i + 1];
}

function valuesOf(argv: readonly string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag && argv[i + 1] !== undefined ? [argv[i + 1] ?? ""] : []));
}

const microvmNoBoot: QemuVmConfig = {
  machineType: "microvm",
  accel: "tcg",
  cpuModel: "max",
  vcpus: 1,
  memoryMiB: 512,
  kernelPath: "/opt/kata-ts/vmlinux",
  kernelParams: [...fastKernelParams("microvm", "tcg", 2096013), "agent.log=debug"].join(" "),
  consoleSocketPath: "/run/kata-ts/sb1/console.sock",
  qmpSocketPath: "/run/kata-ts/sb1/qmp.sock",
  agentSocketPath: "/run/kata-ts/sb1/agent.sock",
  sharedDir: { path: "/run/kata-ts/sb1/shared", mountTag: "kataShared" },
  pidfilePath: "/run/kata-ts/sb1/qemu.pid",
};

const microvmTcg: QemuVmConfig = {
  ...microvmNoBoot,
  initrdPath: "/opt/kata-ts/initrd.cpio",
  readonlyDisks: [{ path: "/opt/kata-ts/tools.erofs", serial: "kata-ts-tools" }],
};

// The pod directory holds a comma to show which switches escape it and which take it verbatim.
const q35Kvm: QemuVmConfig = {
  machineType: "q35",
  accel: "kvm",
  cpuModel: "host",
  vcpus: 2,
  memoryMiB: 2048,
  kernelPath: "/opt/kata-ts/vmlinux",
  imagePath: "/opt/kata-ts/root,fs.img",
  readonlyDisks: [
    { path: "/opt/kata-ts/tools,1.erofs", serial: "tools" },
    { path: "/opt/kata-ts/data.img", serial: "data,1" },
  ],
  kernelParams: [
    ...fastKernelParams("q35", "kvm"),
    "root=/dev/vda",
    "ro",
    "rootfstype=ext4",
    "rootflags=data=ordered,errors=remount-ro",
  ].join(" "),
  consoleSocketPath: "/run/kata-ts/pod,2/console.sock",
  qmpSocketPath: "/run/kata-ts/pod,2/qmp.sock",
  agentSocketPath: "/run/kata-ts/pod,2/agent.sock",
  pidfilePath: "/run/kata-ts/pod,2/qemu.pid",
  firmware: "/usr/share/qemu/qboot.rom",
};

const microvmClone: QemuVmConfig = {
  ...microvmTcg,
  consoleSocketPath: "/run/kata-ts/clone3/console.sock",
  qmpSocketPath: "/run/kata-ts/clone3/qmp.sock",
  agentSocketPath: "/run/kata-ts/clone3/agent.sock",
  sharedDir: { path: "/run/kata-ts/clone3/shared", mountTag: "kataShared" },
  pidfilePath: "/run/kata-ts/clone3/qemu.pid",
  memoryBackend: { memPath: "/dev/shm/kata-ts-template.mem", share: false },
  incoming: "defer",
};

/** The pod's tcfilter endpoints: taps in the netns, the guest NICs carrying the veths' MACs. */
const microvmPodNics: QemuVmConfig = {
  ...microvmTcg,
  nics: [
    { tapName: "tap0_kata", mac: "02:42:0A:58:00:05" },
    { tapName: "tap1_kata", mac: "02:42:0a:59:00:05" },
  ],
};

describe("planQemuArgs golden files", () => {
  it("plans microvm + tcg + initrd + 9p", () => {
    assertGolden("microvm-tcg-initrd-9p", planQemuArgs(microvmTcg));
  });

  it("plans q35 + kvm + read-only image", () => {
    assertGolden("q35-kvm-image", planQemuArgs(q35Kvm));
  });

  it("plans microvm + two NICs on taps", () => {
    assertGolden("microvm-tcg-nics", planQemuArgs(microvmPodNics));
  });

  it("plans a microvm template clone: memory backend + incoming defer", () => {
    assertGolden("microvm-memory-backend-incoming", planQemuArgs(microvmClone));
  });
});

describe("planQemuArgs", () => {
  it("always disables defaults, user config, display and reboot", () => {
    for (const config of [microvmTcg, q35Kvm, microvmClone]) {
      const argv = planQemuArgs(config);

      for (const flag of ["-nodefaults", "-no-user-config", "-no-reboot"]) assert.ok(argv.includes(flag), flag);
      assert.equal(valueOf(argv, "-display"), "none");
    }
  });

  it("uses virtio-mmio devices on microvm and PCI devices on q35", () => {
    const mmio = valuesOf(planQemuArgs(microvmTcg), "-device").join(" ");
    const pci = valuesOf(planQemuArgs(q35Kvm), "-device").join(" ");

    assert.match(mmio, /virtio-serial-device/);
    assert.match(mmio, /virtio-9p-device/);
    assert.doesNotMatch(mmio, /-pci/);
    assert.match(pci, /virtio-serial-pci/);
    assert.match(pci, /virtio-blk-pci/);
    assert.doesNotMatch(pci, /virtio-\w+-device/);
  });

  it("attaches the image read-only and passes no initrd", () => {
    const argv = planQemuArgs(q35Kvm);

    assert.match(valueOf(argv, "-blockdev") ?? "", /^driver=raw,.*read-only=on,/);
    assert.equal(argv.includes("-initrd"), false);
  });

  it("names the agent port and lets QEMU listen on the agent socket", () => {
    const argv = planQemuArgs(microvmTcg);

    assert.ok(valuesOf(argv, "-device").some((d) => d.endsWith(`name=${agentPortName}`)));
    assert.ok(
      valuesOf(argv, "-chardev").includes("socket,id=agent,path=/run/kata-ts/sb1/agent.sock,server=on,wait=off"),
    );
  });

  it("puts the serial console on a socket QEMU listens on, never on a file", () => {
    const argv = planQemuArgs(q35Kvm);

    assert.equal(valueOf(argv, "-serial"), "chardev:console");
    assert.ok(
      valuesOf(argv, "-chardev").includes("socket,id=console,path=/run/kata-ts/pod,,2/console.sock,server=on,wait=off"),
    );
    assert.ok(!valuesOf(argv, "-chardev").some((c) => c.startsWith("file,")));
  });

  it("sizes the memory backend from memoryMiB, as QEMU requires it to equal -m", () => {
    const argv = planQemuArgs(microvmClone);

    assert.equal(valueOf(argv, "-m"), "512M");
    assert.match(valueOf(argv, "-object") ?? "", /,size=512M,.*share=off$/);
    assert.equal(valueOf(argv, "-machine"), "microvm,accel=tcg,memory-backend=mem0");
  });

  it("sizes TCG's code buffer with -accel, and leaves accel off -machine (QEMU refuses both)", () => {
    const tcg = planQemuArgs({ ...microvmTcg, tcgTbSizeMiB: 64 });
    const kvm = planQemuArgs({ ...q35Kvm, tcgTbSizeMiB: 64 });

    assert.equal(valueOf(tcg, "-machine"), "microvm");
    assert.equal(valueOf(tcg, "-accel"), "tcg,tb-size=64");
    assert.equal(valueOf(kvm, "-machine"), "q35,accel=kvm");
    assert.equal(kvm.includes("-accel"), false);
    for (const bad of [0, 1.5, 1025]) {
      assert.throws(
        () => planQemuArgs({ ...microvmTcg, tcgTbSizeMiB: bad }),
        /tcgTbSizeMiB: .* is not an integer in 1\.\.1024/,
      );
    }
  });

  it("adds a free-page-reporting balloon only when asked, on the machine's transport", () => {
    const balloons = (argv: string[]): string[] => valuesOf(argv, "-device").filter((d) => d.includes("balloon"));

    assert.deepEqual(balloons(planQemuArgs({ ...microvmTcg, freePageReporting: true })), [
      "virtio-balloon-device,id=balloon0,free-page-reporting=on",
    ]);
    assert.deepEqual(balloons(planQemuArgs({ ...q35Kvm, freePageReporting: true })), [
      "virtio-balloon-pci,id=balloon0,free-page-reporting=on",
    ]);
    assert.deepEqual(balloons(planQemuArgs(microvmTcg)), []);
  });

  it("leaves q35 room to hotplug vCPUs and memory DIMMs when asked", () => {
    const argv = planQemuArgs({ ...q35Kvm, hotplug: { maxVcpus: 8, maxMemoryMiB: 16384, memorySlots: 10 } });

    assert.equal(valueOf(argv, "-smp"), "2,maxcpus=8");
    assert.equal(valueOf(argv, "-m"), "2048M,slots=10,maxmem=16384M");
  });

  it("leaves CPU room only when there are no memory slots", () => {
    const argv = planQemuArgs({ ...q35Kvm, hotplug: { maxVcpus: 4, maxMemoryMiB: 2048, memorySlots: 0 } });

    assert.equal(valueOf(argv, "-smp"), "2,maxcpus=4");
    assert.equal(valueOf(argv, "-m"), "2048M");
  });

  it("boots exactly vcpus and memoryMiB without hotplug room", () => {
    const argv = planQemuArgs(microvmTcg);

    assert.equal(valueOf(argv, "-smp"), "1,maxcpus=1");
    assert.equal(valueOf(argv, "-m"), "512M");
  });

  it("refuses hotplug room on microvm and room smaller than the boot size, naming each field", () => {
    assert.throws(
      () => planQemuArgs({ ...microvmTcg, hotplug: { maxVcpus: 2, maxMemoryMiB: 512, memorySlots: 0 } }),
      (e) => isKataError(e, "INVALID_ARGUMENT") && /hotplug: microvm has no CPU or memory hotplug/.test(e.message),
    );
    assert.throws(
      () => planQemuArgs({ ...q35Kvm, hotplug: { maxVcpus: 1, maxMemoryMiB: 1024, memorySlots: 300 } }),
      (e) =>
        isKataError(e, "INVALID_ARGUMENT") &&
        /hotplug\.maxVcpus: 1 is not an integer >= vcpus \(2\)/.test(e.message) &&
        /hotplug\.memorySlots: 300 is not an integer in 0\.\.256/.test(e.message) &&
        /hotplug\.maxMemoryMiB: 1024 is not an integer >= memoryMiB \(2048\)/.test(e.message),
    );
  });

  it("attaches read-only disks after the root image, each read-only and with its serial", () => {
    const argv = planQemuArgs(q35Kvm);

    assert.deepEqual(valuesOf(argv, "-blockdev"), [
      "driver=raw,node-name=image0,read-only=on,file.driver=file,file.filename=/opt/kata-ts/root,,fs.img",
      "driver=raw,node-name=rodisk0,read-only=on,file.driver=file,file.filename=/opt/kata-ts/tools,,1.erofs",
      "driver=raw,node-name=rodisk1,read-only=on,file.driver=file,file.filename=/opt/kata-ts/data.img",
    ]);
    assert.deepEqual(
      valuesOf(argv, "-device").filter((d) => d.startsWith("virtio-blk")),
      [
        "virtio-blk-pci,id=blk0,drive=image0",
        "virtio-blk-pci,id=roblk0,drive=rodisk0,serial=tools",
        "virtio-blk-pci,id=roblk1,drive=rodisk1,serial=data,,1",
      ],
    );
  });

  it("attaches the tools disk next to an initrd", () => {
    const argv = planQemuArgs(microvmTcg);

    assert.equal(valueOf(argv, "-initrd"), "/opt/kata-ts/initrd.cpio");
    assert.deepEqual(valuesOf(argv, "-blockdev"), [
      "driver=raw,node-name=rodisk0,read-only=on,file.driver=file,file.filename=/opt/kata-ts/tools.erofs",
    ]);
    assert.ok(valuesOf(argv, "-device").includes("virtio-blk-device,id=roblk0,drive=rodisk0,serial=kata-ts-tools"));
  });

  it("rejects a relative disk path, an empty, long or repeated serial", () => {
    const disks = [
      { path: "tools.erofs", serial: "a" },
      { path: "/b", serial: "" },
      { path: "/c", serial: "s".repeat(21) },
      { path: "/d", serial: "a" },
    ];

    assert.throws(
      () => planQemuArgs({ ...microvmTcg, readonlyDisks: disks }),
      (e) =>
        isKataError(e, "INVALID_ARGUMENT") &&
        [
          "readonlyDisks[0].path: not an absolute path",
          "readonlyDisks[1].serial: 0 bytes, must be 1..20",
          "readonlyDisks[2].serial: 21 bytes",
          "readonlyDisks[3].serial: a is used twice",
        ].every((m) => e.message.includes(m)),
    );
  });

  it("puts each NIC on its tap, virtio-net-device on microvm and virtio-net-pci on q35, MAC lower-cased", () => {
    const mmio = planQemuArgs(microvmPodNics);
    const pci = planQemuArgs({ ...q35Kvm, nics: [{ tapName: "tap0_kata", mac: "02:00:00:00:00:01" }] });

    assert.deepEqual(valuesOf(mmio, "-netdev"), [
      "tap,id=net0,ifname=tap0_kata,script=no,downscript=no,vhost=off",
      "tap,id=net1,ifname=tap1_kata,script=no,downscript=no,vhost=off",
    ]);
    assert.deepEqual(
      valuesOf(mmio, "-device").filter((d) => d.startsWith("virtio-net")),
      [
        "virtio-net-device,netdev=net0,mac=02:42:0a:58:00:05,id=nic0",
        "virtio-net-device,netdev=net1,mac=02:42:0a:59:00:05,id=nic1",
      ],
    );
    assert.ok(valuesOf(pci, "-device").includes("virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01,id=nic0"));
  });

  it("plans no NIC when there is none (internetworking_model none)", () => {
    const argv = planQemuArgs(microvmTcg);

    assert.equal(argv.includes("-netdev"), false);
    assert.ok(!valuesOf(argv, "-device").some((d) => d.startsWith("virtio-net")));
  });

  it("rejects bad tap names and MACs, naming each NIC's field", () => {
    const nics = [
      { tapName: "", mac: "02:00:00:00:00:01" },
      { tapName: "t".repeat(16), mac: "02:00:00:00:00:02" },
      { tapName: "tap,0", mac: "02:00:00:00:00:03" },
      { tapName: "tap 4", mac: "02:00:00:00:00:04" },
      { tapName: "tap5", mac: "02:00:00:00:05" },
      { tapName: "tap6", mac: "01:00:5e:00:00:06" },
      { tapName: "tap6", mac: "02:00:00:00:00:07" },
      { tapName: "tap8", mac: "02:00:00:00:00:07" },
      { tapName: "tap=9", mac: "00:00:00:00:00:00" },
    ];

    assert.throws(
      () => planQemuArgs({ ...microvmTcg, nics }),
      (e) =>
        isKataError(e, "INVALID_ARGUMENT") &&
        [
          "nics[0].tapName: 0 bytes, must be 1..15",
          "nics[1].tapName: 16 bytes",
          'nics[2].tapName: "tap,0" has',
          'nics[3].tapName: "tap 4" has',
          'nics[4].mac: "02:00:00:00:05" is not a MAC address',
          "nics[5].mac: 01:00:5e:00:00:06 is not a unicast address",
          "nics[6].tapName: tap6 is used twice",
          "nics[7].mac: 02:00:00:00:00:07 is used twice",
          'nics[8].tapName: "tap=9" has',
          "nics[8].mac: 00:00:00:00:00:00 is not a unicast address",
        ].every((m) => e.message.includes(m)),
    );
  });

  it("rejects neither initrd nor image, naming the fields", () => {
    assert.throws(
      () => planQemuArgs(microvmNoBoot),
      (e) => isKataError(e, "INVALID_ARGUMENT") && e.message.includes("initrdPath, imagePath: exactly one"),
    );
  });

  it("rejects both initrd and image", () => {
    assert.throws(() => planQemuArgs({ ...microvmTcg, imagePath: "/x.img" }), /exactly one must be set/);
  });

  it("reports every issue at once: relative path, long socket path, long mount tag, bad sizes", () => {
    const bad: QemuVmConfig = {
      ...microvmTcg,
      vcpus: 0,
      memoryMiB: 1.5,
      kernelPath: "vmlinux",
      consoleSocketPath: "console.sock",
      qmpSocketPath: "/" + "q".repeat(107),
      sharedDir: { path: "/s", mountTag: "t".repeat(32) },
    };

    assert.throws(
      () => planQemuArgs(bad),
      (e) =>
        isKataError(e, "INVALID_ARGUMENT") &&
        ["vcpus", "memoryMiB", "kernelPath: not an absolute path", "qmpSocketPath: unix socket path is 108 bytes"]
          .concat(["consoleSocketPath: not an absolute path"])
          .concat(["sharedDir.mountTag: 32 bytes"])
          .every((s) => e.message.includes(s)),
    );
  });

  it("accepts a 107-byte socket path and a 31-byte mount tag (the limits)", () => {
    const argv = planQemuArgs({
      ...microvmTcg,
      qmpSocketPath: "/" + "q".repeat(106),
      sharedDir: { path: "/s", mountTag: "t".repeat(31) },
    });

    assert.ok(argv.includes(`unix:/${"q".repeat(106)},server=on,wait=off`));
  });
});
