import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { computeInputsHash, parseManifest, renderManifest, type HashInputs, type ImageManifest } from "./manifest.js";

const base: HashInputs = {
  kernelPackage: "linux-image-6.1.0-56-amd64",
  kernelVersion: "6.1.192-2",
  modules: ["virtio_pci", "overlay"],
  files: { busybox: "b1", crun: "c1", node: "n1", agent: "a1", "lib:/lib/x86_64-linux-gnu/libc.so.6": "l1" },
  initScript: "#!/bin/sh\n",
  inittab: "::sysinit:/bin/true\n",
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
      { ...base, files: { ...base.files, "lib:/lib/x86_64-linux-gnu/libm.so.6": "m1" } },
      { ...base, initScript: "#!/bin/sh\necho\n" },
      { ...base, inittab: "" },
    ];

    const hashes = new Set([base, ...variants].map(computeInputsHash));

    assert.equal(hashes.size, variants.length + 1);
  });
});

describe("parseManifest", () => {
  const manifest: ImageManifest = {
    formatVersion: 1,
    inputsHash: "h",
    kernelRelease: "6.1.0-56-amd64",
    kernelPackage: "linux-image-6.1.0-56-amd64",
    kernelVersion: "6.1.192-2",
    files: [{ name: "vmlinux", sizeBytes: 3 }],
    sourceHashes: { "/usr/bin/node": { sizeBytes: 1, mtimeMs: 2, sha256: "s" } },
  };

  it("reads back what renderManifest wrote", () => {
    assert.deepEqual(parseManifest(renderManifest(manifest)), manifest);
  });

  it("treats corrupt or foreign manifests as absent", () => {
    assert.equal(parseManifest("{"), undefined);
    assert.equal(parseManifest(JSON.stringify({ ...manifest, formatVersion: 0 })), undefined);
    assert.equal(parseManifest(JSON.stringify({ ...manifest, files: [{ name: "x" }] })), undefined);
  });
});
