import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  append,
  bios,
  blockdevRawFile,
  chardevSocket,
  cpu,
  deviceVirtio9p,
  deviceVirtioBlk,
  deviceVirtioNet,
  deviceVirtioSerial,
  deviceVirtserialport,
  displayNone,
  fsdevLocal,
  incoming,
  initrd,
  kernel,
  m,
  machine,
  netdevTap,
  noReboot,
  nodefaults,
  noUserConfig,
  objectMemoryBackendFile,
  pidfile,
  qemuValue,
  qmp,
  serial,
  smp,
  toArgv,
} from "./switches.js";

describe("QEMU switch builders", () => {
  it("qemuValue doubles every comma", () => {
    assert.equal(qemuValue("/a,b,,c"), "/a,,b,,,,c");
    assert.equal(qemuValue("/plain"), "/plain");
  });

  it("machine puts accel and the memory backend in the machine options", () => {
    assert.deepEqual(machine({ type: "q35", accel: "kvm" }), ["-machine", "q35,accel=kvm"]);
    assert.deepEqual(machine({ type: "microvm", accel: "tcg", memoryBackend: "m,0" }), [
      "-machine",
      "microvm,accel=tcg,memory-backend=m,,0",
    ]);
  });

  it("cpu, smp and m format their values", () => {
    assert.deepEqual(cpu("max"), ["-cpu", "max"]);
    assert.deepEqual(smp(2), ["-smp", "2,maxcpus=2"]);
    assert.deepEqual(smp(1, 4), ["-smp", "1,maxcpus=4"]);
    assert.deepEqual(m(512), ["-m", "512M"]);
    assert.deepEqual(m(512, { slots: 4, maxMemMiB: 4096 }), ["-m", "512M,slots=4,maxmem=4096M"]);
  });

  it("kernel, initrd, append, bios and pidfile take their value verbatim (QEMU does not unescape them)", () => {
    assert.deepEqual(kernel("/k,1"), ["-kernel", "/k,1"]);
    assert.deepEqual(initrd("/i,1"), ["-initrd", "/i,1"]);
    assert.deepEqual(append("rootflags=a,b"), ["-append", "rootflags=a,b"]);
    assert.deepEqual(bios("/b,1"), ["-bios", "/b,1"]);
    assert.deepEqual(pidfile("/p,1"), ["-pidfile", "/p,1"]);
  });

  it("chardevSocket escapes the path and renders server and wait", () => {
    assert.deepEqual(chardevSocket({ id: "agent", path: "/r,1/a.sock", server: true, wait: false }), [
      "-chardev",
      "socket,id=agent,path=/r,,1/a.sock,server=on,wait=off",
    ]);
    assert.deepEqual(chardevSocket({ id: "c", path: "/c.sock", server: false, wait: false }), [
      "-chardev",
      "socket,id=c,path=/c.sock",
    ]);
  });

  it("serial puts the first serial port on a chardev", () => {
    assert.deepEqual(serial("console"), ["-serial", "chardev:console"]);
  });

  it("qmp listens on an escaped unix path without waiting for a client", () => {
    assert.deepEqual(qmp("/r,1/qmp.sock"), ["-qmp", "unix:/r,,1/qmp.sock,server=on,wait=off"]);
  });

  it("virtio devices pick -device on mmio and -pci on pci", () => {
    assert.deepEqual(deviceVirtioSerial("mmio", { id: "vs0" }), ["-device", "virtio-serial-device,id=vs0"]);
    assert.deepEqual(deviceVirtioSerial("pci", { id: "vs0" }), ["-device", "virtio-serial-pci,id=vs0"]);
    assert.deepEqual(deviceVirtio9p("mmio", { fsdev: "fs0", mountTag: "kataShared" }), [
      "-device",
      "virtio-9p-device,fsdev=fs0,mount_tag=kataShared",
    ]);
    assert.deepEqual(deviceVirtioBlk("pci", { id: "blk0", drive: "image0" }), [
      "-device",
      "virtio-blk-pci,id=blk0,drive=image0",
    ]);
    assert.deepEqual(deviceVirtioBlk("mmio", { id: "b", drive: "d", serial: "s,1" }), [
      "-device",
      "virtio-blk-device,id=b,drive=d,serial=s,,1",
    ]);
  });

  it("builds a tap netdev QEMU opens but never configures, and its virtio-net frontend", () => {
    assert.deepEqual(netdevTap({ id: "net0", ifname: "tap0_kata" }), [
      "-netdev",
      "tap,id=net0,ifname=tap0_kata,script=no,downscript=no,vhost=off",
    ]);
    assert.deepEqual(deviceVirtioNet("mmio", { id: "nic0", netdev: "net0", mac: "02:00:00:00:00:01" }), [
      "-device",
      "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01,id=nic0",
    ]);
    assert.deepEqual(deviceVirtioNet("pci", { id: "nic1", netdev: "net1", mac: "02:00:00:00:00:02" }), [
      "-device",
      "virtio-net-pci,netdev=net1,mac=02:00:00:00:00:02,id=nic1",
    ]);
  });

  it("deviceVirtserialport names the bus, chardev and port, and its id when given", () => {
    assert.deepEqual(deviceVirtserialport({ bus: "vs0.0", chardev: "agent", name: "a,b" }), [
      "-device",
      "virtserialport,bus=vs0.0,chardev=agent,name=a,,b",
    ]);
    assert.deepEqual(deviceVirtserialport({ id: "p,1", bus: "vs0.0", chardev: "agent", name: "a" }), [
      "-device",
      "virtserialport,id=p,,1,bus=vs0.0,chardev=agent,name=a",
    ]);
  });

  it("fsdevLocal escapes the shared path", () => {
    assert.deepEqual(fsdevLocal({ id: "fs0", path: "/s,1", securityModel: "none" }), [
      "-fsdev",
      "local,id=fs0,path=/s,,1,security_model=none",
    ]);
  });

  it("blockdevRawFile always names the raw format and renders read-only", () => {
    assert.deepEqual(blockdevRawFile({ nodeName: "image0", filename: "/i,1.img", readOnly: true }), [
      "-blockdev",
      "driver=raw,node-name=image0,read-only=on,file.driver=file,file.filename=/i,,1.img",
    ]);
    assert.match(blockdevRawFile({ nodeName: "d", filename: "/d", readOnly: false })[1] ?? "", /read-only=off/);
  });

  it("objectMemoryBackendFile renders size in MiB, the escaped path and share", () => {
    assert.deepEqual(objectMemoryBackendFile({ id: "mem0", memPath: "/dev/shm/t,1", sizeMiB: 256, share: true }), [
      "-object",
      "memory-backend-file,id=mem0,size=256M,mem-path=/dev/shm/t,,1,share=on",
    ]);
  });

  it("flag-only switches carry no value, and toArgv flattens them", () => {
    const switches = [nodefaults(), noUserConfig(), displayNone(), noReboot(), incoming("defer")];

    assert.deepEqual(toArgv(switches), [
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-no-reboot",
      "-incoming",
      "defer",
    ]);
  });
});
