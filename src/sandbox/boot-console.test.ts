import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import {
  consolesToPrune,
  failedBootsDirName,
  keepBootConsole,
  keptConsoleMaxBytes,
  maxKeptConsoles,
} from "./boot-console.js";

function noError(e: unknown): void {
  assert.fail(`unexpected error: ${String(e)}`);
}

describe("consolesToPrune", () => {
  it("removes the oldest beyond the count", () => {
    const files = [
      { name: "a.console.log", mtimeMs: 3 },
      { name: "b.console.log", mtimeMs: 1 },
      { name: "c.console.log", mtimeMs: 2 },
    ];
    assert.deepEqual(consolesToPrune(files, 2), ["b.console.log"]);
    assert.deepEqual(consolesToPrune(files, 3), []);
  });
});

describe("keepBootConsole", () => {
  let dir = "";
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "boot-console-test-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("copies the rotated then the current console log, and names the copy", async () => {
    const log = path.join(dir, "vm", "console.log");
    await mkdir(path.dirname(log));
    await writeFile(`${log}.1`, "early boot\n");
    await writeFile(log, "Kernel panic\n");

    const kept = await keepBootConsole(dir, "sb1", log, noError);

    assert.equal(kept, path.join(dir, failedBootsDirName, "sb1.console.log"));
    assert.equal(await readFile(kept, "utf8"), "early boot\nKernel panic\n");
  });

  it("keeps only the last keptConsoleMaxBytes", async () => {
    const log = path.join(dir, "console.log");
    await writeFile(`${log}.1`, Buffer.alloc(keptConsoleMaxBytes, "a"));
    await writeFile(log, "end\n");

    const kept = await keepBootConsole(dir, "big", log, noError);

    const text = await readFile(kept ?? "", "utf8");
    assert.equal(text.length, keptConsoleMaxBytes);
    assert.ok(text.endsWith("aend\n"));
  });

  it("keeps at most maxKeptConsoles copies, dropping the oldest", async () => {
    const log = path.join(dir, "console.log");
    await writeFile(log, "x\n");
    for (let i = 0; i < maxKeptConsoles + 2; i++) {
      const kept = await keepBootConsole(dir, `sb${i}`, log, noError);
      // Distinct, increasing mtimes whatever the filesystem's timestamp resolution.
      await utimes(kept ?? "", i + 1, i + 1);
    }
    const names = (await readdir(path.join(dir, failedBootsDirName))).sort();
    assert.equal(names.length, maxKeptConsoles);
    assert.ok(!names.includes("sb0.console.log") && names.includes(`sb${maxKeptConsoles + 1}.console.log`));
  });

  it("keeps an empty copy when the guest printed nothing, and reports a failure instead of throwing", async () => {
    const kept = await keepBootConsole(dir, "quiet", path.join(dir, "none.log"), noError);
    assert.equal(await readFile(kept ?? "", "utf8"), "");

    const errors: unknown[] = [];
    await writeFile(path.join(dir, "file"), "");
    const r = await keepBootConsole(path.join(dir, "file"), "x", path.join(dir, "none.log"), (e) => errors.push(e));
    assert.equal(r, undefined);
    assert.equal(errors.length, 1);
  });
});
