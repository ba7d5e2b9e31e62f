import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { awaitFile } from "./await-file.js";

let root = "";
const never = new Promise<never>(() => undefined);

describe("awaitFile", () => {
  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), "kata-ts-await-file-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("resolves true at once for a file already there", async () => {
    await mkdir(path.join(root, "c1"));
    await writeFile(path.join(root, "c1", "status"), "{}");
    assert.equal(await awaitFile(root, path.join(root, "c1", "status"), { until: never, timeoutMs: 5_000 }), true);
  });

  it("wakes on the directory and the file being made, well before its fallback poll", async () => {
    const file = path.join(root, "c1", "status");
    setTimeout(() => {
      void mkdir(path.join(root, "c1")).then(() => setTimeout(() => void writeFile(file, "{}"), 50));
    }, 50);
    const t0 = Date.now();
    // A 10 s fallback poll: only the inotify wake-ups can make this resolve in time.
    assert.equal(await awaitFile(root, file, { until: never, timeoutMs: 5_000, fallbackPollMs: 10_000 }), true);
    assert.ok(Date.now() - t0 < 2_000, `took ${Date.now() - t0} ms`);
  });

  it("finds a file in a root that did not exist yet by the fallback poll", async () => {
    const state = path.join(root, "state");
    const file = path.join(state, "c1", "status");
    setTimeout(() => void mkdir(path.join(state, "c1"), { recursive: true }).then(() => writeFile(file, "{}")), 50);
    assert.equal(await awaitFile(state, file, { until: never, timeoutMs: 5_000, fallbackPollMs: 20 }), true);
  });

  it("resolves false once `until` settles (the maker exited), and at the deadline", async () => {
    const file = path.join(root, "c1", "status");
    const t0 = Date.now();
    assert.equal(
      await awaitFile(root, file, { until: Promise.resolve(), timeoutMs: 5_000, fallbackPollMs: 10_000 }),
      false,
    );
    assert.equal(await awaitFile(root, file, { until: Promise.reject(new Error("x")), timeoutMs: 5_000 }), false);
    assert.ok(Date.now() - t0 < 2_000);
    assert.equal(await awaitFile(root, file, { until: never, timeoutMs: 60, fallbackPollMs: 20 }), false);
  });
});
