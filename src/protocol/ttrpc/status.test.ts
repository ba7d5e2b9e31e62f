import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, KataError, describeError, isKataError } from "../../base/errors.js";
import { fromWireStatus, toWireStatus } from "./status.js";

const expectedWire: Record<Code, number> = {
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
};

describe("toWireStatus / fromWireStatus", () => {
  for (const code of Object.values(Code)) {
    it(`maps ${code} to gRPC code ${expectedWire[code]} and back`, () => {
      const wire = toWireStatus(new KataError(code, "container c1"));

      const back = fromWireStatus(wire, "grpc.AgentService/StartContainer");

      assert.equal(wire.code, expectedWire[code]);
      assert.equal(back.code, code);
      assert.equal(back.message, "grpc.AgentService/StartContainer");
      assert.equal(describeError(back), "grpc.AgentService/StartContainer: container c1");
    });
  }

  it("sends the whole cause chain as the message", () => {
    const e = new KataError(Code.NotFound, "start container c1", {
      cause: new KataError(Code.NotFound, "no such process"),
    });

    assert.deepEqual(toWireStatus(e), { code: 5, message: "start container c1: no such process" });
  });

  it("sends a foreign error as INTERNAL and an aborted operation as CANCELLED", () => {
    assert.deepEqual(toWireStatus(new Error("boom")), { code: 13, message: "boom" });
    assert.equal(toWireStatus(new DOMException("aborted", "AbortError")).code, 1);
    assert.equal(toWireStatus("a string").code, 13);
  });

  it("maps numbers we do not know (and OK, which is no error) to INTERNAL, keeping the number", () => {
    for (const n of [0, 2, 7, 10, 11, 15, 16, 99, -1]) {
      const e = fromWireStatus({ code: n, message: "x" }, "op");

      assert.ok(isKataError(e, Code.Internal), `code ${n}`);
      assert.equal(e.details["wireCode"], n);
    }
  });
});
