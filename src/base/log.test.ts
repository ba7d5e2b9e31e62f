import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, KataError } from "./errors.js";
import { JsonLogger, errField, loggableJson, toLoggable } from "./log.js";

/** A logger at debug level and the lines it wrote. */
function capture(format: "json" | "text"): { log: JsonLogger; lines: string[] } {
  const lines: string[] = [];
  return {
    log: new JsonLogger(
      (l) => {
        lines.push(l);
      },
      { level: "debug", format },
    ),
    lines,
  };
}

function cyclic(): Record<string, unknown> {
  const a: Record<string, unknown> = { name: "a" };
  a["self"] = a;
  a["list"] = [a, { back: a }];
  return a;
}

describe("toLoggable", () => {
  it("renders BigInt as its decimal string, at any depth", () => {
    assert.deepEqual(toLoggable({ n: 2n ** 64n, list: [1n] }), { n: "18446744073709551616", list: ["1"] });
  });

  it("renders a cycle as [Circular] and repeats a value shared by two fields", () => {
    const shared = { x: 1 };

    assert.deepEqual(toLoggable(cyclic()), {
      name: "a",
      self: "[Circular]",
      list: ["[Circular]", { back: "[Circular]" }],
    });
    assert.deepEqual(toLoggable({ a: shared, b: shared }), { a: { x: 1 }, b: { x: 1 } });
  });

  it("renders an Error as the err field shape, at any depth", () => {
    const e = new KataError(Code.NotFound, "open bundle", { cause: new Error("ENOENT") });

    assert.deepEqual(toLoggable({ nested: { e } }), {
      nested: { e: { code: "NOT_FOUND", message: "open bundle: ENOENT" } },
    });
  });

  it("applies toJSON, and renders Map, Set, functions and symbols", () => {
    const v = { d: new Date(0), m: new Map([["k", 1n]]), s: new Set([1]), f: function named() {}, y: Symbol("s") };

    assert.deepEqual(toLoggable(v), {
      d: "1970-01-01T00:00:00.000Z",
      m: { k: "1" },
      s: [1],
      f: "[function named]",
      y: "Symbol(s)",
    });
  });

  it("names a value whose getter throws instead of throwing", () => {
    const bad = {
      get boom(): never {
        throw new Error("getter failed");
      },
    };

    assert.deepEqual(toLoggable({ bad }), { bad: "[unloggable: getter failed]" });
  });

  it("cuts nesting past its depth limit", () => {
    let deep: unknown = "leaf";
    for (let i = 0; i < 100; i++) deep = { d: deep };

    assert.match(loggableJson(deep), /"\[Too deep\]"/);
  });
});

describe("errField", () => {
  it("never throws, even for a thrown value that cannot be printed", () => {
    const evil = {
      toString(): never {
        throw new Error("no");
      },
    };

    assert.deepEqual(errField(evil), { code: "INTERNAL", message: "[error that cannot be described]" });
  });
});

describe("JsonLogger", () => {
  for (const format of ["json", "text"] as const) {
    it(`writes one ${format} line for BigInt, cyclic and Error fields instead of throwing`, () => {
      const { log, lines } = capture(format);

      log.info("stats", { bytes: 5n, loop: cyclic(), err: new Error("boom") });

      assert.equal(lines.length, 1);
      const line = lines[0] ?? "";
      assert.ok(line.endsWith("\n"));
      assert.match(line, /"?bytes"?[=:]"5"/);
      assert.match(line, /\[Circular\]/);
      assert.match(line, /"code":"INTERNAL","message":"boom"/);
    });

    it(`writes a ${format} line when the fields object's own getter throws`, () => {
      const { log, lines } = capture(format);
      const fields = {
        get pid(): never {
          throw new Error("getter failed");
        },
      };

      log.warn("odd", fields);

      assert.equal(lines.length, 1);
      assert.match(lines[0] ?? "", /getter failed/);
    });
  }

  it("keeps the fixed field order and the json shape", () => {
    const { log, lines } = capture("json");

    log.child({ sandboxId: "s1" }).debug("hello", { pid: 7 });

    const rec: unknown = JSON.parse(lines[0] ?? "");
    assert.ok(typeof rec === "object" && rec !== null);
    assert.deepEqual(Object.keys(rec), ["time", "level", "msg", "sandboxId", "pid"]);
    assert.deepEqual({ ...rec, time: "" }, { time: "", level: "debug", msg: "hello", sandboxId: "s1", pid: 7 });
  });

  it("drops a line whose write throws", () => {
    const log = new JsonLogger(() => {
      throw new Error("EPIPE");
    });

    log.error("lost");
  });
});
