import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseAptDepends, parseAptPolicyCandidate } from "./kernel-package.js";
import { debFilePrefix, xzMagicOffsets } from "./kernel.js";

describe("apt-cache output parsers", () => {
  it("finds the versioned image package among the meta package's dependencies", () => {
    const out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n  Recommends: firmware-linux-free\n";

    assert.equal(parseAptDepends(out), "linux-image-6.1.0-56-amd64");
    assert.equal(parseAptDepends("linux-image-amd64\n"), undefined);
  });

  it("reads the candidate version, none when apt has none", () => {
    const policy = (c: string): string =>
      `linux-image-6.1.0-56-amd64:\n  Installed: (none)\n  Candidate: ${c}\n  Version table:\n     6.1.192-2 500\n`;

    assert.equal(parseAptPolicyCandidate(policy("6.1.192-2")), "6.1.192-2");
    assert.equal(parseAptPolicyCandidate(policy("(none)")), undefined);
  });
});

describe("debFilePrefix", () => {
  it("encodes an epoch the way apt-get download names the file", () => {
    assert.equal(debFilePrefix({ name: "linux-image-x", version: "1:6.1-2" }), "linux-image-x_1%3a6.1-2_");
  });
});

describe("xzMagicOffsets", () => {
  it("finds every XZ stream magic", () => {
    const magic = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
    const image = Buffer.from([1, 2, ...magic, 9, ...magic.slice(0, 5), 1, ...magic]);

    assert.deepEqual(xzMagicOffsets(image), [2, 15]);
  });
});
