import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Command } from "commander";
import { verbGroups } from "./verb-groups.js";

/** runc 1.1's verbs (`runc --help`), besides help. */
const runcVerbs = [
  "checkpoint",
  "create",
  "delete",
  "events",
  "exec",
  "kill",
  "list",
  "pause",
  "ps",
  "restore",
  "resume",
  "run",
  "spec",
  "start",
  "state",
  "update",
  "features",
];

describe("verb groups", () => {
  it("name exactly the commands (and aliases) each group's module registers", async () => {
    const noContext = (): never => {
      throw new Error("registration must not build the runtime context");
    };
    for (const g of verbGroups) {
      const program = new Command("kata-ts").enablePositionalOptions();
      await g.register(program, noContext, () => "/run/kata-ts");
      const names = program.commands.flatMap((c) => [c.name(), ...c.aliases()]);

      assert.deepEqual([...names].sort(), [...g.verbs].sort(), `group ${g.verbs.join(",")}`);
    }
  });

  it("cover every verb of runc (features and version are always registered)", () => {
    const all = new Set([...verbGroups.flatMap((g) => g.verbs), "features", "version"]);

    assert.deepEqual(
      runcVerbs.filter((v) => !all.has(v)),
      [],
    );
  });

  it("name each verb once", () => {
    const all = verbGroups.flatMap((g) => g.verbs);

    assert.equal(new Set(all).size, all.length);
  });
});
