// The agent when processes end under it: a process that exits between our look and our signal, a
// container crun no longer knows, a crun delete that fails.

import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, KataError } from "../base/errors.js";
import { defaultSpec } from "../oci/default-spec.js";
import { ExecProcessRequestSchema } from "../protocol/gen/agent_pb.js";
import { ociToGrpcProcess } from "../protocol/oci-spec/convert.js";
import { RecordingLogger } from "../../test/helpers/fakes.js";
import {
  agentWorld,
  execRequest,
  running,
  sandboxMp,
  vanishedPid,
  withSandbox,
  type AgentWorld,
} from "../../test/helpers/guest-agent.js";

const terminalExec = (containerId: string, execId: string) =>
  create(ExecProcessRequestSchema, {
    containerId,
    execId,
    process: ociToGrpcProcess({
      ...defaultSpec({ args: ["sh"], terminal: true }).process,
      cwd: "/",
      user: { uid: 0, gid: 0 },
    }),
  });

let bundlesDir = "";
let logger: RecordingLogger;
let w: AgentWorld;

describe("Agent, when processes end under it", () => {
  beforeEach(async () => {
    bundlesDir = await mkdtemp(path.join(tmpdir(), "kata-ts-agent-"));
    logger = new RecordingLogger();
    w = agentWorld(bundlesDir, logger);
    await withSandbox(w.agent);
  });
  afterEach(async () => {
    await rm(bundlesDir, { recursive: true, force: true });
  });

  it("treats an exec that exited just before its signal as signalled", async () => {
    await running(w, "c1");
    await w.agent.execProcess(execRequest("c1", "e1"));
    const child = w.crun.execs[0]?.child;
    assert.ok(child !== undefined);
    // The process is gone, but the agent has not yet seen its exit.
    child.exit({ code: 0, signal: null });

    await w.agent.signalProcess("c1", "e1", 15);

    assert.deepEqual(child.signals, []);
  });

  it("treats a terminal process that exited just before its resize (ESRCH) as resized", async () => {
    await running(w, "c1");
    w.crun.nextExecPid = vanishedPid;
    await w.agent.execProcess(terminalExec("c1", "t1"));

    await w.agent.resizeTerminal("c1", "t1", 40, 100);

    assert.ok((await readdir(path.join(bundlesDir, "c1"))).includes("winsize-t1"));
  });

  it("signals a container whose init ended but is not yet reaped without an error", async () => {
    const init = await running(w, "c1");
    // crun has seen the container end (Crun.kill then succeeds); the agent has not reaped crun yet.
    init.exit({ code: 0, signal: null });

    await w.agent.signalProcess("c1", "", 9);
  });

  it("removes a container when crun delete fails, with a warning naming the container and the error", async () => {
    await running(w, "c1");
    w.crun.deleteError = new KataError(Code.DeadlineExceeded, "crun --root /run/crun delete --force c1: timed out");

    await w.agent.removeContainer("c1", 10);

    assert.deepEqual([...w.handler.attached], [sandboxMp]);
    const warned = logger.entries.filter((e) => e.level === "warn");
    assert.deepEqual(warned, [
      {
        level: "warn",
        msg: "crun delete failed",
        fields: {
          containerId: "c1",
          err: { code: "DEADLINE_EXCEEDED", message: "crun --root /run/crun delete --force c1: timed out" },
        },
      },
    ]);
  });

  it("kills crun itself, with a warning, when the container outlives its SIGKILL", async () => {
    const init = await running(w, "c1");
    w.crun.ignoreKill = true;

    await w.agent.removeContainer("c1", 0.02);

    assert.equal(init.hasExited, true);
    assert.deepEqual(
      logger.entries.filter((e) => e.level === "warn").map((e) => e.msg),
      ["container outlived SIGKILL: killing crun"],
    );
  });
});
