import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import type { LinuxNamespace, Spec } from "../oci/spec.js";
import { kataError, ScriptedRunner, type ScriptedReply } from "../../test/helpers/fakes.js";
import { NetnsManager, netnsName, nsenterCommand, planNetns } from "./netns.js";

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

  it("puts a root's scope in the name, so one id under two --roots gets two namespaces", () => {
    assert.equal(netnsName("sb1", "0a1b2c3d"), "kata-ts-0a1b2c3d-sb1");
    assert.notEqual(netnsName("sb1", "0a1b2c3d"), netnsName("sb1", "ffffffff"));
    assert.match(netnsName("b".repeat(300), "0a1b2c3d"), /^kata-ts-0a1b2c3d-b{32}-[0-9a-f]{16}$/);
    assert.deepEqual(planNetns(specWith([{ type: "network" }]), "sb1", "0a1b2c3d"), {
      kind: "create",
      name: "kata-ts-0a1b2c3d-sb1",
    });
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

describe("NetnsManager.create", () => {
  let runDir = "";
  beforeEach(async () => {
    runDir = await mkdtemp(path.join(tmpdir(), "kata-ts-netns-"));
  });
  afterEach(async () => {
    await rm(runDir, { recursive: true, force: true });
  });

  /** A manager whose `ip netns add` runs `add` (which may create the namespace file, as a racer would). */
  const managerWith = (
    add: (file: string) => Promise<ScriptedReply>,
  ): { netns: NetnsManager; runner: ScriptedRunner } => {
    const runner = new ScriptedRunner((_file, args) => add(path.join(runDir, args[2] ?? "")));
    return { netns: new NetnsManager({ runner, runDir }), runner };
  };

  it("runs ip netns add and returns the namespace file", async () => {
    const { netns, runner } = managerWith(async (file) => {
      await writeFile(file, "");
      return {};
    });

    assert.equal(await netns.create("kata-ts-a"), path.join(runDir, "kata-ts-a"));
    assert.deepEqual(runner.argv, [["ip", "netns", "add", "kata-ts-a"]]);
  });

  it("refuses a name already taken with ALREADY_EXISTS, without running ip", async () => {
    await writeFile(path.join(runDir, "kata-ts-a"), "");
    const { netns, runner } = managerWith(() => Promise.resolve({}));

    await assert.rejects(
      netns.create("kata-ts-a"),
      kataError(Code.AlreadyExists, "network namespace kata-ts-a already exists"),
    );
    assert.deepEqual(runner.calls, []);
  });

  it("reports ALREADY_EXISTS when a racing creator made the file between the check and ip, whatever ip printed", async () => {
    const { netns } = managerWith(async (file) => {
      await writeFile(file, "");
      return { code: 1, stderr: "Kann die Namensraumdatei nicht anlegen\n" };
    });

    const e = await netns.create("kata-ts-a").catch((err: unknown) => err);

    assert.ok(isKataError(e, Code.AlreadyExists));
    assert.ok(isKataError(e.cause, Code.Internal) && e.cause.message.startsWith("ip netns add kata-ts-a: exit code 1"));
  });

  it("reports INTERNAL when ip fails and leaves no namespace file, even if it printed File exists", async () => {
    const { netns } = managerWith(() => Promise.resolve({ code: 1, stderr: "mount: File exists\n" }));

    await assert.rejects(
      netns.create("kata-ts-a"),
      kataError(Code.Internal, "ip netns add kata-ts-a: exit code 1: mount: File exists"),
    );
  });
});
