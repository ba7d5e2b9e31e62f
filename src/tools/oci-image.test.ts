import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { imageRunConfig } from "./oci-image.js";

describe("imageRunConfig", () => {
  it("runs sh by default, with no entrypoint", () => {
    const c = imageRunConfig({});
    assert.deepEqual(c["Cmd"], ["sh"]);
    assert.equal("Entrypoint" in c, false);
  });

  it("carries an entrypoint and a cmd (the sandbox image's sleep-forever)", () => {
    const c = imageRunConfig({ entrypoint: ["sh", "-c"], cmd: ["sleep 1"] });
    assert.deepEqual(c["Entrypoint"], ["sh", "-c"]);
    assert.deepEqual(c["Cmd"], ["sleep 1"]);
  });
});
