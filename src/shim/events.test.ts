// The event publisher against our TtrpcServer serving a fake containerd event service on a real unix
// socket: order, payload, namespace; a service that hangs, fails or is absent never blocks publish().

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { settlesWithin } from "../base/async.js";
import { TaskExitSchema, TaskStartSchema } from "../protocol/gen/containerd/api/events/task_pb.js";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { FakeEventsServer } from "../../test/helpers/fake-events.js";
import { RecordingLogger } from "../../test/helpers/fakes.js";
import { createEventPublisher, socketPathOf, topics, type EventPublisher } from "./events.js";

let srv: FakeEventsServer;
let log: RecordingLogger;
let pub: EventPublisher | undefined;

function publisher(over: { retryDelayMs?: number; maxAttempts?: number; callTimeoutMs?: number } = {}): EventPublisher {
  pub = createEventPublisher({
    ttrpcAddress: `unix://${srv.socketPath}`,
    namespace: "k8s.io",
    logger: log,
    retryDelayMs: over.retryDelayMs ?? 20,
    maxAttempts: over.maxAttempts ?? 5,
    callTimeoutMs: over.callTimeoutMs ?? 200,
    drainMs: 500,
  });
  return pub;
}

const warnings = (): string[] =>
  log.entries.filter((e) => e.level === "warn").map((e) => `${e.msg} ${String(e.fields["topic"])}`);

describe("event publisher", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    srv = await FakeEventsServer.create();
    log = new RecordingLogger();
    pub = undefined;
  });
  afterEach(async () => {
    await pub?.close();
    await srv.dispose();
  });

  it("forwards events in order with their namespace, topic, time and a decodable payload", async () => {
    await srv.start();
    const p = publisher();
    const before = Date.now();

    for (let i = 0; i < 50; i++) p.publish(topics.start, TaskStartSchema, { containerId: `c${i}`, pid: i });
    p.publish(topics.exit, TaskExitSchema, { containerId: "c0", id: "c0", pid: 7, exitStatus: 3 });
    await srv.waitFor(51);

    assert.deepEqual(
      srv.received.slice(0, 50).map((_, i) => srv.decode(i, TaskStartSchema).containerId),
      Array.from({ length: 50 }, (_, i) => `c${i}`),
    );
    const exit = srv.decode(50, TaskExitSchema);
    assert.deepEqual([exit.containerId, exit.id, exit.pid, exit.exitStatus], ["c0", "c0", 7, 3]);
    const last = srv.received[50];
    assert.equal(last?.typeUrl, "containerd.events.TaskExit");
    assert.equal(last.topic, "/tasks/exit");
    assert.ok(srv.received.every((e) => e.namespace === "k8s.io"));
    const ts = last.envelope.timestamp;
    assert.ok(ts !== undefined && timestampDate(ts).getTime() >= before - 1000);
    assert.deepEqual(warnings(), []);
  });

  it("returns at once from publish while the service never answers, and drops after the tries, naming the topic", async () => {
    await srv.start();
    srv.mode = "hang";
    const p = publisher({ maxAttempts: 2, callTimeoutMs: 100 });

    const t0 = performance.now();
    for (let i = 0; i < 10; i++) p.publish(topics.oom, TaskStartSchema, { containerId: "c" });
    const publishMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 600));

    assert.ok(publishMs < 50, `publish took ${publishMs} ms`);
    assert.ok(warnings().includes("event dropped: containerd did not take it /tasks/oom"), warnings().join("\n"));
    assert.equal(srv.received.length, 0);
  });

  it("keeps events while the service is absent and delivers them, in order, once it is back", async () => {
    const p = publisher({ retryDelayMs: 50, maxAttempts: 10 });

    p.publish(topics.create, TaskStartSchema, { containerId: "a" });
    p.publish(topics.start, TaskStartSchema, { containerId: "b" });
    await new Promise((r) => setTimeout(r, 120));
    await srv.start();
    await srv.waitFor(2);

    assert.deepEqual(srv.topics(), ["/tasks/create", "/tasks/start"]);
    assert.deepEqual(warnings(), []);
  });

  it("reconnects after the service closes the connection (containerd restarted)", async () => {
    await srv.start();
    const p = publisher();
    p.publish(topics.create, TaskStartSchema, { containerId: "a" });
    await srv.waitFor(1);
    // Let the answer reach the publisher: an event whose answer is lost is sent again (at least once).
    await new Promise((r) => setTimeout(r, 100));

    await srv.stop();
    p.publish(topics.start, TaskStartSchema, { containerId: "b" });
    await new Promise((r) => setTimeout(r, 60));
    await srv.start();
    await srv.waitFor(2);

    assert.deepEqual(srv.topics(), ["/tasks/create", "/tasks/start"]);
  });

  it("drops events past the queue's bound, naming the topic, and keeps the ones it held", async () => {
    pub = createEventPublisher({
      ttrpcAddress: srv.socketPath,
      namespace: "default",
      logger: log,
      maxQueued: 3,
      retryDelayMs: 20,
      maxAttempts: 50,
    });
    for (let i = 0; i < 4; i++)
      pub.publish(i === 3 ? topics.delete : topics.start, TaskStartSchema, { containerId: `c${i}` });
    await srv.start();
    await srv.waitFor(3);

    assert.deepEqual(
      srv.received.map((_, i) => srv.decode(i, TaskStartSchema).containerId),
      ["c0", "c1", "c2"],
    );
    assert.ok(warnings().some((w) => w.startsWith("event dropped: the queue is full") && w.endsWith("/tasks/delete")));
  });

  it("close() drains what is queued, and gives up within its deadline when nobody answers", async () => {
    await srv.start();
    const p = publisher();
    p.publish(topics.create, TaskStartSchema, { containerId: "a" });
    await p.close();
    assert.deepEqual(srv.topics(), ["/tasks/create"]);

    srv.mode = "hang";
    const q = publisher({ callTimeoutMs: 60_000 });
    q.publish(topics.exit, TaskExitSchema, { containerId: "a" });
    assert.equal(await settlesWithin(q.close(), 2000), true);
    assert.ok(warnings().some((w) => w.startsWith("events dropped at close")));
  });

  it("reads the address as a path or unix://path", () => {
    assert.equal(socketPathOf("unix:///run/containerd/containerd.sock.ttrpc"), "/run/containerd/containerd.sock.ttrpc");
    assert.equal(socketPathOf("/run/x.sock"), "/run/x.sock");
    assert.throws(() => socketPathOf("unix://"), /ttrpc address: empty/);
  });
});
