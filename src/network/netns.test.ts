import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import type { LinuxNamespace, Spec } from "../oci/spec.js";
import { netnsName, nsenterCommand, planNetns } from "./netns.js";

function specWith(namespaces: LinuxNamespace[] | undefined): Spec {
  return { ociVersion: "1.0.2", linux: namespaces === undefined ? {} : { namespaces } };
}

describe("planNetns", () => {
  it("creates a namespace named after the sandbox when the network entry has no path", () => {
    const spec = specWith([{ type: "pid" }, { type: "network" }]);

    assert.deepEqual(planNetns(spec, "sb1"), { kind: "create", name: "kata-ts-sb1" });
  });

  it("treats an empty path as no path", () => {
    assert.deepEqual(planNetns(specWith([{ type: "network", path: "" }]), "sb1"), {
      kind: "create",
      name: "kata-ts-sb1",
    });
  });

  it("joins the namespace at the entry's path", () => {
    const spec = specWith([{ type: "network", path: "/var/run/netns/cni-1234" }]);

    assert.deepEqual(planNetns(spec, "sb1"), { kind: "join", path: "/var/run/netns/cni-1234" });
  });

  const hostCases: [string, Spec][] = [
    ["no network entry", specWith([{ type: "pid" }, { type: "mount" }])],
    ["no namespaces at all", specWith(undefined)],
    ["no linux section", { ociVersion: "1.0.2" }],
  ];
  for (const [what, spec] of hostCases) {
    it(`refuses host networking when the spec has ${what}`, () => {
      assert.throws(
        () => planNetns(spec, "sb1"),
        (e: unknown) =>
          isKataError(e, Code.FailedPrecondition) && e.message.startsWith("host networking requested, not supported"),
      );
    });
  }

  it("refuses a network entry listed twice", () => {
    const spec = specWith([{ type: "network" }, { type: "network", path: "/var/run/netns/x" }]);

    assert.throws(
      () => planNetns(spec, "sb1"),
      (e: unknown) => isKataError(e, Code.InvalidArgument),
    );
  });

  it("refuses a relative namespace path", () => {
    const spec = specWith([{ type: "network", path: "netns/x" }]);

    assert.throws(
      () => planNetns(spec, "sb1"),
      (e: unknown) => isKataError(e, Code.InvalidArgument) && e.message.includes("netns/x"),
    );
  });
});

describe("netnsName", () => {
  it("keeps a containerd-style 64-hex sandbox id verbatim", () => {
    const id = "a".repeat(64);

    assert.equal(netnsName(id), `kata-ts-${id}`);
  });

  it("hashes ids that are too long for iproute2 (NAME_MAX) into a stable, valid name", () => {
    const id = "b".repeat(300);

    const name = netnsName(id);

    assert.ok(name.length <= 255, name);
    assert.match(name, /^kata-ts-b{32}-[0-9a-f]{16}$/);
    assert.equal(netnsName(id), name);
    assert.notEqual(netnsName("c".repeat(300)).slice(-16), name.slice(-16));
  });

  it("replaces characters iproute2 or a path would choke on", () => {
    const name = netnsName("pod/with spaces");

    assert.match(name, /^kata-ts-pod_with_spaces-[0-9a-f]{16}$/);
  });
});

describe("nsenterCommand", () => {
  it("enters only the network namespace and passes the program's arguments untouched", () => {
    assert.deepEqual(nsenterCommand("/var/run/netns/n1", "/bin/hook", ["--flag", "x y"]), {
      file: "/usr/bin/nsenter",
      args: ["--net=/var/run/netns/n1", "--", "/bin/hook", "--flag", "x y"],
    });
  });
});
