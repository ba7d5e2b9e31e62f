import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { checkSandboxSockets, sandboxSocketPaths } from "./socket-paths.js";

const vmSockets = ["qmp.sock", "agent.sock", "console.sock"];

describe("sandboxSocketPaths", () => {
  it("lists the service's socket, then the VM's", () => {
    assert.deepEqual(sandboxSocketPaths("/run/kata-ts", "sb1", vmSockets), [
      "/run/kata-ts/sbs/sb1/shim.sock",
      "/run/kata-ts/vm/sb1/qmp.sock",
      "/run/kata-ts/vm/sb1/agent.sock",
      "/run/kata-ts/vm/sb1/console.sock",
    ]);
  });
});

describe("checkSandboxSockets", () => {
  // "/run/kata-ts/vm/" + id + "/console.sock" is the longest: 29 bytes besides the id.
  const fits = 107 - 29;

  it("accepts the longest id whose every socket fits sun_path", () => {
    checkSandboxSockets("/run/kata-ts", "a".repeat(fits), vmSockets);
  });

  it("refuses a longer id, naming it, its length and the longest this --root allows", () => {
    const id = "b".repeat(fits + 1);

    assert.throws(
      () => {
        checkSandboxSockets("/run/kata-ts", id, vmSockets);
      },
      kataError(
        Code.InvalidArgument,
        `sandbox id ${id} is ${fits + 1} bytes`,
        `/run/kata-ts/vm/${id}/console.sock would be 108 bytes`,
        "(107)",
        `at most ${fits} bytes with this --root`,
      ),
    );
  });

  it("says when --root itself leaves no room for an id", () => {
    const root = `/tmp/${"r".repeat(90)}`;

    assert.throws(
      () => {
        checkSandboxSockets(root, "sb1", vmSockets);
      },
      kataError(Code.InvalidArgument, "sandbox id sb1 is 3 bytes", `--root ${root} is too long for any sandbox id`),
    );
  });
});
