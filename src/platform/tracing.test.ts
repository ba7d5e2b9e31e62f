import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { delay } from "../base/async.js";
import { inSpan, installFileTracing } from "./tracing.js";

describe("file tracing", () => {
  it("writes nested spans across awaits with parent links, and marks errors", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "kata-ts-trace-"));
    const file = path.join(dir, "spans.jsonl");
    installFileTracing(file);

    await inSpan("createSandbox", { sandboxId: "s1" }, async () => {
      await delay(5);
      await inSpan("startVm", {}, () => delay(5));
      await assert.rejects(
        inSpan("agentReady", {}, () => Promise.reject(new Error("boom"))),
        /boom/,
      );
    });

    const spans = (await readFile(file, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const byName = new Map(spans.map((s) => [s["name"], s]));
    const root = byName.get("createSandbox");
    assert.ok(root);
    assert.equal(root["parentSpanId"], undefined);
    assert.deepEqual(root["attributes"], { sandboxId: "s1" });
    assert.equal(byName.get("startVm")?.["parentSpanId"], root["spanId"]);
    assert.equal(byName.get("startVm")?.["traceId"], root["traceId"]);
    assert.deepEqual(byName.get("agentReady")?.["status"], { code: 2, message: "boom" });
    assert.ok(Number(root["durationMs"]) >= 10);
    await rm(dir, { recursive: true, force: true });
  });
});
