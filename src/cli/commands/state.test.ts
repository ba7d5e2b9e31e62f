import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PersistedContainer, PersistedSandbox } from "../../sandbox/persist.js";
import { listTable, stateOf } from "./state.js";

const container: PersistedContainer = {
  id: "c1",
  bundle: "/b",
  rootfs: "/b/root",
  type: "sandbox",
  status: "running",
  createdAt: "2026-12-02T09:56:38.853Z",
  annotations: {},
};
const sandbox: PersistedSandbox = {
  version: 1,
  id: "c1",
  servicePid: 4242,
  socket: "/r/sbs/c1/shim.sock",
  createdAt: "2026-12-02T09:56:38.000Z",
  containers: [container],
};

describe("state from the state directory", () => {
  it("has runc's fields in runc's order", () => {
    const s = stateOf(sandbox, container, true);

    assert.deepEqual(Object.keys(s), ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"]);
    assert.deepEqual(s, {
      ociVersion: s.ociVersion,
      id: "c1",
      pid: 4242,
      status: "running",
      bundle: "/b",
      rootfs: "/b/root",
      created: "2026-12-02T09:56:38.853Z",
      owner: "",
    });
    assert.match(s.ociVersion, /^1\.\d+\.\d+$/);
  });

  it("gives the pid of the host process noted for the container, when there is one", () => {
    assert.equal(stateOf(sandbox, container, true, 777).pid, 777);
    assert.equal(stateOf(sandbox, { ...container, status: "stopped" }, true, 777).pid, 0);
  });

  it("is stopped with pid 0 once stopped, or when the service is gone", () => {
    assert.deepEqual(
      [stateOf(sandbox, { ...container, status: "stopped" }, true), stateOf(sandbox, container, false)].map((s) => [
        s.status,
        s.pid,
      ]),
      [
        ["stopped", 0],
        ["stopped", 0],
      ],
    );
  });

  it("prints annotations when there are some, and a rootfs for states of older builds", () => {
    const old: PersistedContainer = { ...container, annotations: { a: "b" } };
    delete (old as { rootfs?: string }).rootfs;
    const s = stateOf(sandbox, old, true);

    assert.equal(s.rootfs, "/b/rootfs");
    assert.deepEqual(s.annotations, { a: "b" });
  });

  it("lists in runc's columns, then the sandbox", () => {
    const row = { ...stateOf(sandbox, container, true), owner: "root", sandbox: "c1" };
    const lines = listTable([row]).split("\n");

    assert.match(lines[0] ?? "", /^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER\s+SANDBOX$/);
    assert.match(lines[1] ?? "", /^c1\s+4242\s+running\s+\/b\s+2026-12-02T09:56:38\.853Z\s+root\s+c1$/);
  });
});
