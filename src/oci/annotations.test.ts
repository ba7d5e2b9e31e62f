import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isKataError } from "../base/errors.js";
import { containerRole } from "./annotations.js";
import type { Spec } from "./spec.js";

const spec = (annotations?: Record<string, string>): Spec => ({
  ociVersion: "1.0.2",
  ...(annotations === undefined ? {} : { annotations }),
});

describe("containerRole", () => {
  it("makes a spec without annotations a single-container sandbox", () => {
    assert.deepEqual(containerRole(spec(), "c1"), { type: "sandbox", sandboxId: "c1", scheme: "none" });
  });

  it("reads containerd CRI keys", () => {
    const s = spec({ "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "pod1" });

    assert.deepEqual(containerRole(s, "c1"), { type: "container", sandboxId: "pod1", scheme: "containerd CRI" });
  });

  it("reads CRI-O keys", () => {
    const s = spec({ "io.kubernetes.cri-o.ContainerType": "sandbox", "io.kubernetes.cri-o.SandboxID": "pod2" });

    assert.deepEqual(containerRole(s, "pod2"), { type: "sandbox", sandboxId: "pod2", scheme: "CRI-O" });
  });

  it("reads dockershim keys, where a sandbox is a podsandbox", () => {
    const s = spec({ "io.kubernetes.docker.type": "podsandbox" });
    const c = spec({ "io.kubernetes.docker.type": "container", "io.kubernetes.sandbox.id": "pod3" });

    assert.equal(containerRole(s, "pod3").type, "sandbox");
    assert.deepEqual(containerRole(c, "c3"), { type: "container", sandboxId: "pod3", scheme: "dockershim" });
  });

  it("names an unknown type value and its key", () => {
    const s = spec({ "io.kubernetes.cri.container-type": "sidecar" });

    assert.throws(
      () => containerRole(s, "c1"),
      (e: unknown) =>
        isKataError(e, "INVALID_ARGUMENT") &&
        e.message ===
          'unknown container type "sidecar" in annotation io.kubernetes.cri.container-type (expected sandbox or container)',
    );
  });

  it("refuses a pod container without a sandbox id", () => {
    const s = spec({ "io.kubernetes.cri.container-type": "container" });

    assert.throws(() => containerRole(s, "c1"), /has no sandbox id \(io\.kubernetes\.cri\.sandbox-id\)/);
  });

  it("refuses a sandbox id that is a path", () => {
    const s = spec({ "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "../x" });

    assert.throws(() => containerRole(s, "c1"), /invalid sandbox id/);
  });

  it("does not treat inherited object keys as types", () => {
    const s = spec({ "io.kubernetes.cri.container-type": "constructor" });

    assert.throws(() => containerRole(s, "c1"), /unknown container type "constructor"/);
  });
});
