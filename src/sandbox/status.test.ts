import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { StatusCell, statusTransitions, type ContainerStatus, type StatusEvent } from "./status.js";

const statuses: readonly ContainerStatus[] = ["creating", "created", "running", "paused", "stopped"];

describe("StatusCell", () => {
  it("walks a container through its life: creating, created, running, paused, running, stopped", () => {
    const c = new StatusCell("container", "c1");

    const seen = [c.status];
    for (const e of ["created", "start", "pause", "resume", "exit"] as const) seen.push(c.apply(e));

    assert.deepEqual(seen, ["creating", "created", "running", "paused", "running", "stopped"]);
  });

  it("refuses a second start with FAILED_PRECONDITION naming the status", () => {
    const c = new StatusCell("container", "c1", "running");

    assert.throws(
      () => c.apply("start"),
      kataError(Code.FailedPrecondition, "container c1 is running: cannot start it"),
    );
    assert.equal(c.status, "running");
  });

  it("names an exec process as a process", () => {
    const p = new StatusCell("process", "e1", "stopped");

    assert.throws(
      () => {
        p.expect("start");
      },
      kataError(Code.FailedPrecondition, "process e1 is stopped: cannot start it"),
    );
  });

  it("stops a created container killed before it started", () => {
    const c = new StatusCell("container", "c1", "created");

    assert.equal(c.apply("exit"), "stopped");
  });

  it("records a paused container's exit (its VM was lost)", () => {
    const c = new StatusCell("container", "c1", "paused");

    assert.equal(c.tryApply("exit"), true);
    assert.equal(c.status, "stopped");
  });

  it("ignores a second exit with tryApply and keeps stopped", () => {
    const c = new StatusCell("container", "c1", "stopped");

    assert.equal(c.tryApply("exit"), false);
    assert.equal(c.status, "stopped");
  });

  it("allows delete only of created and stopped containers, with the --force hint", () => {
    for (const s of statuses) {
      const c = new StatusCell("container", "c1", s);
      if (s === "created" || s === "stopped") c.require("delete");
      else
        assert.throws(
          () => {
            c.require("delete");
          },
          kataError(Code.FailedPrecondition, `is ${s}`, "delete with --force"),
        );
    }
  });

  it("allows exec only in a running container", () => {
    for (const s of statuses) {
      const c = new StatusCell("container", "c1", s);
      if (s === "running") c.require("exec");
      else
        assert.throws(
          () => {
            c.require("exec");
          },
          kataError(Code.FailedPrecondition, "exec needs a running container"),
        );
    }
  });

  it("has exactly the transitions of the table, and no other", () => {
    for (const [event, from] of Object.entries(statusTransitions) as [StatusEvent, Record<string, string>][]) {
      for (const s of statuses) {
        const c = new StatusCell("container", "x", s);
        assert.equal(c.can(event), from[s] !== undefined, `${event} from ${s}`);
        if (from[s] !== undefined) assert.equal(c.apply(event), from[s]);
      }
    }
  });
});
