import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { Code } from "../base/errors.js";
import { defaultSpec } from "../oci/default-spec.js";
import { kataError } from "../../test/helpers/fakes.js";
import { anyTypes, fromJsonAny, jsonAny } from "./task-service.js";

describe("jsonAny and fromJsonAny", () => {
  it("carries a value through an Any unchanged", () => {
    const process = defaultSpec({ args: ["echo", "héllo ☃"] }).process;

    const any = jsonAny(anyTypes.process, process);
    const back = fromJsonAny(any, anyTypes.process, "exec e1: spec");

    assert.equal(any.typeUrl, anyTypes.process);
    assert.deepEqual(back, process);
  });

  it("accepts the same type under another URL prefix", () => {
    const any = create(AnySchema, {
      typeUrl: "example.com/LinuxResources",
      value: Buffer.from('{"pids":{"limit":10}}'),
    });

    const back = fromJsonAny(any, anyTypes.resources, "update c1: resources");

    assert.deepEqual(back, { pids: { limit: 10 } });
  });

  it("refuses another type with INVALID_ARGUMENT naming both types", () => {
    const any = jsonAny(anyTypes.resources, {});

    const call = (): unknown => fromJsonAny(any, anyTypes.process, "exec e1: spec");

    assert.throws(
      call,
      kataError(Code.InvalidArgument, `exec e1: spec: type "${anyTypes.resources}", expected ${anyTypes.process}`),
    );
  });

  it("refuses a bare type name that is only a suffix of the expected one", () => {
    const any = create(AnySchema, { typeUrl: "Process", value: Buffer.from("{}") });

    const call = (): unknown => fromJsonAny(any, anyTypes.process, "exec e1: spec");

    assert.throws(call, kataError(Code.InvalidArgument, 'type "Process"'));
  });

  it("refuses a value over 1 MiB before parsing it", () => {
    const any = jsonAny(anyTypes.process, "x".repeat(1 << 20));

    const call = (): unknown => fromJsonAny(any, anyTypes.process, "exec e1: spec");

    assert.throws(call, kataError(Code.InvalidArgument, `exec e1: spec: ${(1 << 20) + 2} bytes, more than ${1 << 20}`));
  });

  it("accepts a value of exactly 1 MiB", () => {
    const any = jsonAny(anyTypes.process, "x".repeat((1 << 20) - 2));

    const back = fromJsonAny(any, anyTypes.process, "exec e1: spec");

    assert.equal(typeof back === "string" ? back.length : -1, (1 << 20) - 2);
  });

  it("refuses a value that is not JSON with INVALID_ARGUMENT", () => {
    const any = create(AnySchema, { typeUrl: anyTypes.process, value: Buffer.from('{"args": [') });

    const call = (): unknown => fromJsonAny(any, anyTypes.process, "exec e1: spec");

    assert.throws(call, kataError(Code.InvalidArgument, "exec e1: spec: not valid JSON"));
  });

  it("refuses a missing Any with INVALID_ARGUMENT", () => {
    const call = (): unknown => fromJsonAny(undefined, anyTypes.resources, "update c1: resources");

    assert.throws(call, kataError(Code.InvalidArgument, "update c1: resources: missing"));
  });
});
