import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import type { Process } from "../oci/spec.js";
import { applyRuncExecFlags } from "./exec-flags.js";

const base: Process = {
  user: { uid: 0, gid: 0, additionalGids: [10] },
  cwd: "/",
  args: ["sh"],
  capabilities: { bounding: ["CAP_KILL"], effective: ["CAP_KILL"], permitted: ["CAP_KILL"], inheritable: ["CAP_KILL"] },
};
const none = { additionalGids: [], cap: [] };
const invalid =
  (re: RegExp) =>
  (e: unknown): boolean =>
    isKataError(e, Code.InvalidArgument) && re.test(e.message);

describe("runc's exec flags", () => {
  it("adds groups, capabilities (bounding, effective, permitted) and no_new_privileges", () => {
    const p = applyRuncExecFlags(base, {
      additionalGids: ["20", "30"],
      cap: ["CAP_NET_ADMIN", "CAP_KILL"],
      noNewPrivs: true,
    });

    assert.deepEqual(p.user.additionalGids, [10, 20, 30]);
    assert.deepEqual(p.capabilities, {
      bounding: ["CAP_KILL", "CAP_NET_ADMIN"],
      effective: ["CAP_KILL", "CAP_NET_ADMIN"],
      permitted: ["CAP_KILL", "CAP_NET_ADMIN"],
      inheritable: ["CAP_KILL"],
    });
    assert.equal(p.noNewPrivileges, true);
    assert.deepEqual(base.user.additionalGids, [10], "the base process is not changed");
  });

  it("drops host security labels, as create does", () => {
    const p = applyRuncExecFlags(base, { ...none, apparmor: "docker-default", processLabel: "system_u:r:x" });

    assert.equal(p.apparmorProfile, undefined);
    assert.equal(p.selinuxLabel, undefined);
  });

  it("refuses what it cannot do, and bad values, naming the flag", () => {
    assert.throws(
      () => applyRuncExecFlags(base, { ...none, cgroup: "sub" }),
      invalid(/^--cgroup "sub": not supported/),
    );
    assert.throws(() => applyRuncExecFlags(base, { ...none, ignorePaused: true }), invalid(/^--ignore-paused/));
    assert.throws(
      () => applyRuncExecFlags(base, { ...none, additionalGids: ["x"] }),
      invalid(/^--additional-gids "x"/),
    );
    assert.throws(() => applyRuncExecFlags(base, { ...none, cap: ["net_admin"] }), invalid(/^--cap "net_admin"/));
  });
});
