import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  computeInputsHash,
  imageFormatVersion,
  parseManifest,
  renderManifest,
  toolsDiskUuid,
  type HashInputs,
  type ImageManifest,
} from "./manifest.js";

const base: HashInputs = {
  kernelPackage: "linux-image-6.1.0-56-amd64",
  kernelVersion: "6.1.192-2",
  modules: ["virtio_pci", "overlay"],
  files: {
    busybox: "b1",
    crun: "c1",
    node: "n1",
    agent: "a1",
    "mkfs.erofs": "e1",
    "lib:/lib/x86_64-linux-gnu/libc.so.6": "l1",
  },
  scripts: { init: "#!/bin/sh\n", inittab: "::sysinit:/bin/true\n" },
  agentStart: "snapshot",
};

describe("computeInputsHash", () => {
  it("is stable for equal inputs, whatever the order of the file map", () => {
    const reordered = { ...base, files: Object.fromEntries(Object.entries(base.files).reverse()) };

    assert.equal(computeInputsHash(base), computeInputsHash({ ...base }));
    assert.equal(computeInputsHash(base), computeInputsHash(reordered));
    assert.match(computeInputsHash(base), /^[0-9a-f]{64}$/);
  });

  it("changes when any input changes", () => {
    const variants: HashInputs[] = [
      { ...base, kernelPackage: "linux-image-6.1.0-57-amd64" },
      { ...base, kernelVersion: "6.1.192-3" },
      { ...base, modules: ["virtio_pci"] },
      { ...base, files: { ...base.files, node: "n2" } },
      { ...base, files: { ...base.files, agent: "a2" } },
      { ...base, files: { ...base.files, "mkfs.erofs": "e2" } },
      { ...base, files: { ...base.files, "lib:/lib/x86_64-linux-gnu/libm.so.6": "m1" } },
      { ...base, scripts: { ...base.scripts, init: "#!/bin/sh\necho\n" } },
      { ...base, scripts: { ...base.scripts, inittab: "" } },
      { ...base, scripts: { ...base.scripts, agentStart: "#!/bin/sh\n" } },
      { ...base, agentStart: "bundle" },
    ];

    const hashes = new Set([base, ...variants].map(computeInputsHash));

    assert.equal(hashes.size, variants.length + 1);
  });
});

describe("parseManifest", () => {
  const manifest: ImageManifest = {
    formatVersion: imageFormatVersion,
    inputsHash: "h",
    kernelRelease: "6.1.0-56-amd64",
    kernelPackage: "linux-image-6.1.0-56-amd64",
    kernelVersion: "6.1.192-2",
    agentStart: "snapshot",
    files: [
      { name: "vmlinux", sizeBytes: 3 },
      { name: "initrd.img", sizeBytes: 4 },
      { name: "tools.erofs", sizeBytes: 5 },
    ],
    sourceHashes: { "/usr/bin/node": { sizeBytes: 1, mtimeMs: 2, sha256: "s" } },
  };

  it("reads back what renderManifest wrote", () => {
    assert.deepEqual(parseManifest(renderManifest(manifest)), manifest);
  });

  it("treats corrupt or foreign manifests as absent", () => {
    assert.equal(parseManifest("{"), undefined);
    assert.equal(parseManifest(JSON.stringify({ ...manifest, formatVersion: 0 })), undefined);
    // Format 1 images had node in the initrd and no tools disk: they are rebuilt, never booted half.
    assert.equal(parseManifest(JSON.stringify({ ...manifest, formatVersion: 1 })), undefined);
    assert.equal(parseManifest(JSON.stringify({ ...manifest, files: [{ name: "x" }] })), undefined);
    assert.equal(parseManifest(JSON.stringify({ ...manifest, agentStart: "build-snapshot" })), undefined);
  });
});

describe("toolsDiskUuid", () => {
  it("formats the first 128 bits of the inputs hash as a UUID", () => {
    const hash = "ceae26cb8bd694cd8846b6b4edeb8cfca7db89bf1db0e396264bc116d1f1eb12";

    assert.equal(toolsDiskUuid(hash), "ceae26cb-8bd6-94cd-8846-b6b4edeb8cfc");
  });

  it("rejects something that is not a hex hash (mkfs.erofs would fail later with less context)", () => {
    assert.throws(() => toolsDiskUuid("abc"), /not 32\+ lower-case hex digits/);
    assert.throws(() => toolsDiskUuid("Z".repeat(64)), /not 32\+ lower-case hex digits/);
  });
});
