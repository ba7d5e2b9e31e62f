import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import { entryCall, hostEntries, serviceCommand, snapshotBlobOf } from "./host-snapshot.js";
import { installRoot } from "./paths.js";

describe("snapshotBlobOf", () => {
  it("finds the blob in either spelling, and none in a plain start", () => {
    assert.equal(snapshotBlobOf(["--snapshot-blob", "/a/b.blob"]), "/a/b.blob");
    assert.equal(snapshotBlobOf(["--max-old-space-size=64", "--snapshot-blob=/c.blob"]), "/c.blob");
    assert.equal(snapshotBlobOf([]), undefined);
    assert.equal(snapshotBlobOf(["--build-snapshot"]), undefined);
  });
});

describe("serviceCommand", () => {
  const args = ["serve", "--root", "/run/x", "--id", "s1"];

  it("starts the service from the blob this process started from", () => {
    assert.deepEqual(serviceCommand("/k", ["--snapshot-blob", "/k/dist/host/kata-ts-host.blob"], args), [
      "--snapshot-blob",
      "/k/dist/host/kata-ts-host.blob",
      "--",
      "shim-service",
      ...args,
    ]);
  });

  it("makes a relative blob path absolute (the service may start elsewhere)", () => {
    const argv = serviceCommand("/k", ["--snapshot-blob", "host.blob"], args);
    assert.equal(argv[1], path.resolve("host.blob"));
  });

  it("starts it from its ES module when this process did not start from a blob", () => {
    assert.deepEqual(serviceCommand("/k", [], args), ["/k/dist/src/cli/shim-main.js", ...args]);
  });
});

describe("entryCall", () => {
  it("names the entry and gives it the argv its ES module would see", () => {
    const c = entryCall("/k", ["/usr/bin/node", "kata-ts", "--root", "/r", "state", "x"]);
    assert.equal(c.entry, "kata-ts");
    assert.deepEqual(c.args, ["--root", "/r", "state", "x"]);
    assert.deepEqual(c.argv, ["/usr/bin/node", "/k/dist/src/cli/kata-ts-main.js", "--root", "/r", "state", "x"]);
  });

  it("refuses an entry it does not have, or none", () => {
    for (const argv of [["/usr/bin/node", "toString"], ["/usr/bin/node"], ["/usr/bin/node", "--root"]]) {
      assert.throws(
        () => entryCall("/k", argv),
        (e) => isKataError(e, Code.InvalidArgument) && /unknown entry/.test((e as Error).message),
      );
    }
  });
});

describe("bin/ launchers", () => {
  it("name an entry of the blob and the ES module that starts the same", async () => {
    for (const [bin, entry] of [
      ["kata-ts", "kata-ts"],
      ["containerd-shim-kata-ts-v2", "containerd-shim"],
    ] as const) {
      const text = await readFile(path.join(installRoot, "bin", bin), "utf8");
      assert.match(text, new RegExp(`^launch ${entry} ${hostEntries[entry]} "\\$@"$`, "m"), bin);
    }
  });
});
