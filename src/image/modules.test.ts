import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isKataError } from "../base/errors.js";
import { elfSection, indexModules, moduleDepends, moduleName, parseModinfo, resolveLoadOrder } from "./modules.js";

/** A minimal little-endian ELF64 with a null section, `.modinfo` holding `modinfo`, and `.shstrtab`. */
function syntheticKo(modinfo: string): Buffer {
  const shstrtab = Buffer.from("\0.modinfo\0.shstrtab\0", "latin1");
  const info = Buffer.from(modinfo, "latin1");
  const shstrtabAt = 64;
  const infoAt = shstrtabAt + shstrtab.length;
  const shoff = Math.ceil((infoAt + info.length) / 8) * 8;
  const elf = Buffer.alloc(shoff + 3 * 64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2; // ELFCLASS64
  elf[5] = 1; // little-endian
  elf.writeBigUInt64LE(BigInt(shoff), 0x28);
  elf.writeUInt16LE(64, 0x3a);
  elf.writeUInt16LE(3, 0x3c);
  elf.writeUInt16LE(2, 0x3e);
  shstrtab.copy(elf, shstrtabAt);
  info.copy(elf, infoAt);
  const header = (i: number, nameOff: number, offset: number, size: number): void => {
    const at = shoff + i * 64;
    elf.writeUInt32LE(nameOff, at);
    elf.writeBigUInt64LE(BigInt(offset), at + 0x18);
    elf.writeBigUInt64LE(BigInt(size), at + 0x20);
  };
  header(1, 1, infoAt, info.length);
  header(2, 10, shstrtabAt, shstrtab.length);
  return elf;
}

describe("moduleName", () => {
  it("strips the suffix and treats - and _ as one", () => {
    assert.equal(moduleName("kernel/net/9p/9pnet_virtio.ko"), "9pnet_virtio");
    assert.equal(moduleName("drivers/foo/snd-hda-intel.ko.xz"), "snd_hda_intel");
  });
});

describe("indexModules", () => {
  it("maps module names to paths and ignores other files", () => {
    const index = indexModules(["drivers/char/virtio_console.ko", "drivers/virtio", "fs/9p/9p.ko", "modules.order"]);

    assert.deepEqual(
      [...index],
      [
        ["virtio_console", "drivers/char/virtio_console.ko"],
        ["9p", "fs/9p/9p.ko"],
      ],
    );
  });

  it("rejects two files with one module name", () => {
    assert.throws(() => indexModules(["a/foo-bar.ko", "b/foo_bar.ko"]), /foo_bar found twice/);
  });
});

describe(".modinfo parsing", () => {
  it("reads depends from the .modinfo section of an ELF file", () => {
    const ko = syntheticKo("license=GPL\0\0\0depends=virtio_ring,virtio\0name=virtio_pci\0alias=a\0alias=b\0");

    assert.deepEqual(moduleDepends(ko), ["virtio_ring", "virtio"]);
    const section = elfSection(ko, ".modinfo");
    assert.ok(section !== undefined);
    assert.deepEqual(parseModinfo(section).get("alias"), ["a", "b"]);
  });

  it("gives no dependencies for an empty depends= entry", () => {
    assert.deepEqual(moduleDepends(syntheticKo("depends=\0name=virtio\0")), []);
  });

  it("rejects a file that is not ELF", () => {
    assert.throws(() => moduleDepends(Buffer.alloc(100)), /not a little-endian ELF64 file/);
  });
});

describe("resolveLoadOrder", () => {
  // The dependencies of the Debian 6.1 modules (modinfo -F depends).
  const debian: Record<string, string[]> = {
    virtio_pci: ["virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_ring", "virtio"],
    virtio_pci_modern_dev: [],
    virtio_pci_legacy_dev: [],
    virtio_ring: [],
    virtio: [],
    virtio_mmio: ["virtio", "virtio_ring"],
    virtio_console: ["virtio", "virtio_ring"],
    "9pnet_virtio": ["9pnet", "virtio", "virtio_ring"],
    "9pnet": [],
    "9p": ["9pnet", "netfs", "fscache"],
    netfs: [],
    fscache: ["netfs"],
    virtio_blk: ["virtio", "virtio_ring"],
    virtio_net: ["net_failover", "virtio", "virtio_ring"],
    net_failover: ["failover"],
    failover: [],
    overlay: [],
  };
  const lookup =
    (table: Record<string, string[]>) =>
    (name: string): readonly string[] | undefined =>
      table[name];

  it("puts dependencies first, each module once", () => {
    const wanted = [
      "virtio_pci",
      "virtio_mmio",
      "virtio_console",
      "9pnet_virtio",
      "9p",
      "virtio_blk",
      "virtio_net",
      "overlay",
    ];

    const order = resolveLoadOrder(wanted, lookup(debian));

    assert.deepEqual(order, [
      "virtio_pci_modern_dev",
      "virtio_pci_legacy_dev",
      "virtio_ring",
      "virtio",
      "virtio_pci",
      "virtio_mmio",
      "virtio_console",
      "9pnet",
      "9pnet_virtio",
      "netfs",
      "fscache",
      "9p",
      "virtio_blk",
      "failover",
      "net_failover",
      "virtio_net",
      "overlay",
    ]);
  });

  it("accepts dashes in wanted names", () => {
    assert.deepEqual(resolveLoadOrder(["net-failover"], lookup(debian)), ["failover", "net_failover"]);
  });

  it("names the missing module and who needed it", () => {
    assert.throws(
      () => resolveLoadOrder(["a"], lookup({ a: ["b"] })),
      (e: unknown) => isKataError(e, "NOT_FOUND") && e.message === "kernel module b not found (needed by a)",
    );
  });

  it("rejects a dependency cycle, naming it", () => {
    assert.throws(
      () => resolveLoadOrder(["a"], lookup({ a: ["b"], b: ["c"], c: ["b"] })),
      (e: unknown) => isKataError(e, "INVALID_ARGUMENT") && e.message === "kernel module dependency cycle: b -> c -> b",
    );
  });
});
