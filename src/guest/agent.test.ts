import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { deadline, raceAbort } from "../base/async.js";
import { Code, KataError } from "../base/errors.js";
import { defaultSpec } from "../oci/default-spec.js";
import { CreateContainerRequestSchema, CreateSandboxRequestSchema, type Storage } from "../protocol/gen/agent_pb.js";
import { guestRootfsPath, guestSharedDir } from "../protocol/guest-paths.js";
import type { FakeChild } from "../../test/helpers/fakes.js";
import { kataError } from "../../test/helpers/fakes.js";
import {
  agentWorld,
  containerRequest,
  execRequest,
  fakeStorage,
  mpOf,
  running as runningIn,
  sandboxMp,
  withSandbox as sandboxOf,
  type FakeCrun,
  type FakeStorageHandler,
} from "../../test/helpers/guest-agent.js";
import { truncateHostname, type Agent } from "./agent.js";

let bundlesDir = "";
let crun: FakeCrun;
let handler: FakeStorageHandler;
let hostnames: string[];
let agent: Agent;

const withSandbox = (): Promise<void> => sandboxOf(agent);
const running = (id: string, opts: { storages?: Storage[] } = {}): Promise<FakeChild> =>
  runningIn({ agent, crun }, id, opts);

describe("Agent", () => {
  beforeEach(async () => {
    bundlesDir = await mkdtemp(path.join(tmpdir(), "kata-ts-agent-"));
    ({ agent, crun, handler, hostnames } = agentWorld(bundlesDir));
  });
  afterEach(async () => {
    await rm(bundlesDir, { recursive: true, force: true });
  });

  describe("createSandbox", () => {
    it("sets the hostname, attaches the sandbox storages and records the sandbox id", async () => {
      await withSandbox();

      assert.equal(agent.sandboxId, "sb1");
      assert.deepEqual(hostnames, ["pod1"]);
      assert.deepEqual([...handler.attached], [sandboxMp]);
    });

    it("refuses a second sandbox with ALREADY_EXISTS and keeps the first", async () => {
      await withSandbox();

      await assert.rejects(
        agent.createSandbox(create(CreateSandboxRequestSchema, { sandboxId: "sb2" })),
        kataError(Code.AlreadyExists, "sandbox sb1 already created"),
      );

      assert.equal(agent.sandboxId, "sb1");
    });

    it("cuts a hostname longer than 64 bytes to 64, never inside a character", async () => {
      const long = "h".repeat(63) + "é" + "tail";

      await agent.createSandbox(create(CreateSandboxRequestSchema, { sandboxId: "sb1", hostname: long }));

      assert.deepEqual(hostnames, ["h".repeat(63)]);
      assert.equal(truncateHostname("a".repeat(70)), "a".repeat(64));
      assert.equal(truncateHostname("pod-1"), "pod-1");
    });

    it("refuses an invalid sandbox id before touching hostname or storage", async () => {
      const req = create(CreateSandboxRequestSchema, {
        sandboxId: "../sb",
        hostname: "h",
        storages: [fakeStorage(sandboxMp)],
      });

      await assert.rejects(agent.createSandbox(req), kataError(Code.InvalidArgument, "invalid sandbox id"));

      assert.equal(agent.sandboxId, undefined);
      assert.deepEqual(hostnames, []);
      assert.deepEqual([...handler.attached], []);
    });
  });

  describe("createContainer", () => {
    it("refuses a container before the sandbox exists with FAILED_PRECONDITION", async () => {
      const req = containerRequest("c1");

      await assert.rejects(agent.createContainer(req), kataError(Code.FailedPrecondition, "sandbox not created"));

      assert.deepEqual([...handler.attached], []);
      assert.deepEqual(await readdir(bundlesDir), []);
    });

    it("attaches the container's storages and writes its spec as the bundle's config.json", async () => {
      await withSandbox();

      await agent.createContainer(containerRequest("c1"));

      const spec: unknown = JSON.parse(await readFile(path.join(bundlesDir, "c1", "config.json"), "utf8"));
      // A terminal is the pty helper's to make (the container inherits it): crun is told there is none.
      const want = defaultSpec({ args: ["sleep", "inf"], rootPath: guestRootfsPath("c1"), terminal: false });
      assert.deepEqual(spec, want);
      assert.deepEqual([...handler.attached].sort(), [sandboxMp, mpOf("c1")].sort());
    });

    it("runs a terminal container under the pty helper at the spec's console size", async () => {
      await withSandbox();
      await agent.createContainer(containerRequest("c1"));

      await agent.startContainer("c1");

      assert.deepEqual(crun.runs.at(-1)?.tty, {
        rows: 24,
        cols: 80,
        resizeFile: path.join(bundlesDir, "c1", "winsize"),
      });
    });

    it("refuses a second container with the same id with ALREADY_EXISTS, keeping the first", async () => {
      await withSandbox();
      await agent.createContainer(containerRequest("c1"));

      await assert.rejects(
        agent.createContainer(containerRequest("c1", { storages: [fakeStorage(`${guestSharedDir}/other`)] })),
        kataError(Code.AlreadyExists, "container c1 already exists"),
      );

      assert.equal(handler.attached.has(`${guestSharedDir}/other`), false);
      await agent.startContainer("c1");
      assert.equal(crun.init("c1").hasExited, false);
    });

    it("refuses a root.path other than the container's guest rootfs with INVALID_ARGUMENT", async () => {
      await withSandbox();
      const req = containerRequest("c1", { rootPath: "/" });

      await assert.rejects(
        agent.createContainer(req),
        kataError(Code.InvalidArgument, `container c1: root.path "/" must be ${guestRootfsPath("c1")}`),
      );

      assert.deepEqual([...handler.attached], [sandboxMp]);
      assert.deepEqual(await readdir(bundlesDir), []);
    });

    it("refuses another container's rootfs as root.path", async () => {
      await withSandbox();
      const req = containerRequest("c1", { rootPath: `${guestSharedDir}/c1/../c2/rootfs` });

      await assert.rejects(agent.createContainer(req), kataError(Code.InvalidArgument, "must be"));
    });

    it("refuses a request without an OCI spec with INVALID_ARGUMENT", async () => {
      await withSandbox();
      const req = create(CreateContainerRequestSchema, { containerId: "c1" });

      await assert.rejects(agent.createContainer(req), kataError(Code.InvalidArgument, "container c1: no OCI spec"));
    });

    it("refuses an invalid container id with INVALID_ARGUMENT", async () => {
      await withSandbox();
      const req = containerRequest("c1");
      req.containerId = "../c1";

      await assert.rejects(agent.createContainer(req), kataError(Code.InvalidArgument, "invalid container id"));

      assert.deepEqual(await readdir(bundlesDir), []);
    });
  });

  describe("start and wait", () => {
    it("runs the container with crun on its bundle and serves its output", async () => {
      await withSandbox();
      await agent.createContainer(containerRequest("c1"));

      await agent.startContainer("c1");
      const init = crun.init("c1");
      init.stdout.write("hello\n");

      assert.equal(agent.process("c1", "").pid, init.pid);
      assert.equal(crun.containers.get("c1")?.bundleDir, path.join(bundlesDir, "c1"));
      assert.deepEqual(crun.containers.get("c1")?.spec.process?.args, ["sleep", "inf"]);
      assert.equal(Buffer.from(await agent.process("c1", "").stdout.read(100)).toString(), "hello\n");
    });

    it("reports the init's exit code to waiters", async () => {
      await withSandbox();
      const init = await running("c1");

      init.exit({ code: 3, signal: null });

      assert.equal(await agent.process("c1", "").wait(), 3);
      assert.equal(await agent.process("c1", "c1").wait(), 3);
    });

    it("refuses to start a running container", async () => {
      await withSandbox();
      await running("c1");

      await assert.rejects(
        agent.startContainer("c1"),
        kataError(Code.FailedPrecondition, "c1 is running, not created"),
      );
    });

    it("refuses to start a container that exited", async () => {
      await withSandbox();
      const init = await running("c1");
      init.exit({ code: 0, signal: null });
      await agent.process("c1", "").wait();

      await assert.rejects(agent.startContainer("c1"), kataError(Code.FailedPrecondition, "c1 is stopped"));
    });

    it("has no process for a container not started yet", async () => {
      await withSandbox();
      await agent.createContainer(containerRequest("c1"));

      assert.throws(() => agent.process("c1", ""), kataError(Code.NotFound, "container c1 has not been started"));
    });

    it("refuses to start an unknown container with NOT_FOUND", async () => {
      await withSandbox();

      await assert.rejects(agent.startContainer("nope"), kataError(Code.NotFound, "container nope not found"));
    });
  });

  describe("signalProcess", () => {
    it("stops a created container on SIGTERM without running it", async () => {
      await withSandbox();
      await agent.createContainer(containerRequest("c1"));

      await agent.signalProcess("c1", "", 15);

      await assert.rejects(agent.startContainer("c1"), kataError(Code.FailedPrecondition, "c1 is stopped"));
      assert.equal(crun.containers.has("c1"), false);
    });

    it("leaves a created container startable after a signal that does not stop it", async () => {
      await withSandbox();
      await agent.createContainer(containerRequest("c1"));

      await agent.signalProcess("c1", "", 1);
      await agent.startContainer("c1");

      assert.equal(crun.init("c1").hasExited, false);
    });

    it("delivers a signal to a running container through crun", async () => {
      await withSandbox();
      const init = await running("c1");

      await agent.signalProcess("c1", "", 15);

      assert.deepEqual(init.signals, ["SIGTERM"]);
      assert.equal(await agent.process("c1", "").wait(), 128 + 15);
    });

    it("delivers a signal to an exec through its own process, not crun", async () => {
      await withSandbox();
      const init = await running("c1");
      await agent.execProcess(execRequest("c1", "e1"));
      const exec = crun.execs[0];
      assert.ok(exec !== undefined);

      await agent.signalProcess("c1", "e1", 15);

      assert.deepEqual(exec.child.signals, ["SIGTERM"]);
      assert.deepEqual(init.signals, []);
      assert.equal(await agent.process("c1", "e1").wait(), 128 + 15);
    });

    it("refuses a number that is no signal with INVALID_ARGUMENT", async () => {
      await withSandbox();
      await running("c1");
      await agent.execProcess(execRequest("c1", "e1"));

      await assert.rejects(
        agent.signalProcess("c1", "e1", 4242),
        kataError(Code.InvalidArgument, "signal 4242 is not a signal number"),
      );
    });

    it("does nothing to a container whose init has exited", async () => {
      await withSandbox();
      const init = await running("c1");
      init.exit({ code: 0, signal: null });
      await agent.process("c1", "").wait();

      await agent.signalProcess("c1", "", 9);

      assert.deepEqual(init.signals, []);
    });
  });

  describe("resizeTerminal", () => {
    it("writes the new size where the pty helper reads it, then wakes the helper with SIGUSR1", async () => {
      await withSandbox();
      const init = await running("c1");

      await agent.resizeTerminal("c1", "", 30, 100);

      assert.equal(await readFile(path.join(bundlesDir, "c1", "winsize"), "utf8"), "30 100\n");
      assert.deepEqual(init.signals, ["SIGUSR1"]);
    });

    it("only writes the size while the helper does not catch SIGUSR1 yet (the signal would kill it)", async () => {
      ({ agent, crun } = agentWorld(bundlesDir, undefined, () => Promise.resolve(false)));
      await withSandbox();
      const init = await running("c1");

      await agent.resizeTerminal("c1", "", 30, 100);

      assert.equal(await readFile(path.join(bundlesDir, "c1", "winsize"), "utf8"), "30 100\n");
      assert.deepEqual(init.signals, []);
    });
  });

  describe("execProcess", () => {
    it("starts a process in a running container and serves it by exec id", async () => {
      await withSandbox();
      await running("c1");

      await agent.execProcess(execRequest("c1", "e1"));
      const exec = crun.execs[0];
      assert.ok(exec !== undefined);
      exec.child.stdout.end("procs\n");

      assert.equal(exec.containerId, "c1");
      assert.equal(agent.process("c1", "e1").pid, exec.child.pid);
      assert.equal(Buffer.from(await agent.process("c1", "e1").stdout.read(100)).toString(), "procs\n");
    });

    it("refuses an exec in a created container with FAILED_PRECONDITION", async () => {
      await withSandbox();
      await agent.createContainer(containerRequest("c1"));

      await assert.rejects(
        agent.execProcess(execRequest("c1", "e1")),
        kataError(Code.FailedPrecondition, "container c1 is created: cannot exec in it"),
      );

      assert.deepEqual(crun.execs, []);
    });

    it("refuses an exec in a stopped container", async () => {
      await withSandbox();
      const init = await running("c1");
      init.exit({ code: 0, signal: null });
      await agent.process("c1", "").wait();

      await assert.rejects(
        agent.execProcess(execRequest("c1", "e1")),
        kataError(Code.FailedPrecondition, "is stopped"),
      );
    });

    it("refuses an exec in a paused container, and allows it again once resumed", async () => {
      await withSandbox();
      await running("c1");
      await agent.pauseContainer("c1");

      await assert.rejects(agent.execProcess(execRequest("c1", "e1")), kataError(Code.FailedPrecondition, "is paused"));
      await agent.resumeContainer("c1");
      await agent.execProcess(execRequest("c1", "e1"));

      assert.equal(crun.execs.length, 1);
      assert.equal(crun.containers.get("c1")?.paused, false);
    });

    it("refuses a second exec with the same id, or the container's own id, with ALREADY_EXISTS", async () => {
      await withSandbox();
      await running("c1");
      await agent.execProcess(execRequest("c1", "e1"));

      await assert.rejects(agent.execProcess(execRequest("c1", "e1")), kataError(Code.AlreadyExists, "process e1"));
      await assert.rejects(agent.execProcess(execRequest("c1", "c1")), kataError(Code.AlreadyExists, "process c1"));

      assert.equal(crun.execs.length, 1);
    });
  });

  describe("removeContainer", () => {
    it("kills a running container, deletes it and releases its storages and bundle", async () => {
      await withSandbox();
      const init = await running("c1");

      await agent.removeContainer("c1", 10);

      assert.deepEqual(init.signals, ["SIGKILL"]);
      assert.equal(crun.containers.has("c1"), false);
      assert.deepEqual([...handler.attached], [sandboxMp]);
      assert.deepEqual(await readdir(bundlesDir), []);
      assert.throws(() => agent.process("c1", ""), kataError(Code.NotFound, "container c1 not found"));
    });

    it("kills crun itself when the container outlives the timeout", async () => {
      await withSandbox();
      const init = await running("c1");
      crun.ignoreKill = true;

      await agent.removeContainer("c1", 0.05);

      assert.deepEqual(init.signals, ["SIGKILL"]);
      assert.equal(crun.containers.has("c1"), false);
      assert.deepEqual([...handler.attached], [sandboxMp]);
    });

    it("releases a created container's storages without asking crun", async () => {
      await withSandbox();
      await agent.createContainer(containerRequest("c1"));

      await agent.removeContainer("c1", 10);

      assert.deepEqual([...handler.attached], [sandboxMp]);
      assert.deepEqual(await readdir(bundlesDir), []);
      await agent.createContainer(containerRequest("c1"));
    });

    it("keeps a storage another container still uses", async () => {
      await withSandbox();
      const shared = fakeStorage(`${guestSharedDir}/vol`);
      await running("c1", { storages: [fakeStorage(mpOf("c1")), shared] });
      await running("c2", { storages: [fakeStorage(mpOf("c2")), shared] });

      await agent.removeContainer("c1", 10);

      assert.deepEqual([...handler.attached].sort(), [sandboxMp, `${guestSharedDir}/vol`, mpOf("c2")].sort());
    });

    it("does nothing for an unknown container", async () => {
      await withSandbox();

      await agent.removeContainer("nope", 10);

      assert.deepEqual([...handler.attached], [sandboxMp]);
    });
  });

  describe("destroySandbox", () => {
    it("removes every container and detaches every storage", async () => {
      await withSandbox();
      const init1 = await running("c1");
      await agent.createContainer(containerRequest("c2"));
      const shared = fakeStorage(`${guestSharedDir}/vol`, true);
      await running("c3", { storages: [fakeStorage(mpOf("c3")), shared] });

      await agent.destroySandbox();

      assert.equal(init1.hasExited, true);
      assert.equal(crun.containers.size, 0);
      assert.deepEqual([...handler.attached], []);
      assert.deepEqual(await readdir(bundlesDir), []);
      assert.equal(agent.sandboxId, undefined);
      for (const id of ["c1", "c2", "c3"]) {
        assert.throws(() => agent.process(id, ""), kataError(Code.NotFound, `container ${id} not found`));
      }
    });

    it("allows a new sandbox afterwards", async () => {
      await withSandbox();
      await running("c1");
      await agent.destroySandbox();

      await withSandbox();
      await running("c1");

      assert.equal(agent.sandboxId, "sb1");
    });

    it('removes a container whose id is "sandbox"', async () => {
      await withSandbox();
      await agent.createContainer(containerRequest("sandbox"));
      // A bound on a hang, not a wait for something: a deadlock leaves nothing else to end the test.
      const bound = deadline(1000);

      await raceAbort(agent.destroySandbox(), bound.signal, "destroy sandbox").finally(() => {
        bound.clear();
      });

      assert.deepEqual([...handler.attached], []);
    });
  });

  describe("listProcesses", () => {
    it("lists the pids of a running container as JSON and none once it stopped", async () => {
      await withSandbox();
      const init = await running("c1");

      const before = Buffer.from(
        await agent.listProcesses("c1", "json", () => Promise.reject(new KataError(Code.Internal, "no ps"))),
      ).toString();
      init.exit({ code: 0, signal: null });
      await agent.process("c1", "").wait();
      const after = Buffer.from(
        await agent.listProcesses("c1", "", () => Promise.reject(new KataError(Code.Internal, "no ps"))),
      ).toString();

      assert.equal(before, JSON.stringify([init.pid]));
      assert.equal(after, "[]");
    });

    it("keeps only the container's rows of the ps table, with its header", async () => {
      await withSandbox();
      const init = await running("c1");
      const table = `PID   USER     STAT   RSS COMMAND\n    1 root     S      100 init\n${init.pid} root     S      200 sleep inf\n`;

      const out = Buffer.from(await agent.listProcesses("c1", "table", () => Promise.resolve(table))).toString();

      assert.equal(out, `PID   USER     STAT   RSS COMMAND\n${init.pid} root     S      200 sleep inf\n`);
    });

    it("passes checked options to ps and filters on its PID column; refuses bad options before running ps", async () => {
      await withSandbox();
      const init = await running("c1");
      const seen: (readonly string[])[] = [];
      const runPs = (args: readonly string[]): Promise<string> => {
        seen.push(args);
        return Promise.resolve(`COMMAND    PID\ninit         1\nsleep  ${init.pid}\n`);
      };

      const out = Buffer.from(await agent.listProcesses("c1", "table", runPs, ["-o", "comm,pid"])).toString();
      const bad = await agent.listProcesses("c1", "table", runPs, ["-o", "pid;reboot"]).catch((e: unknown) => e);

      assert.equal(out, `COMMAND    PID\nsleep  ${init.pid}\n`);
      assert.deepEqual(seen, [["-o", "comm,pid"]]);
      assert.ok(bad instanceof KataError && bad.code === Code.InvalidArgument, String(bad));
    });
  });
});
