// QmpClient against a scripted peer on a real unix socket: negotiation, replies in order, events, errors and
// the protocol violations that close the connection.

import assert from "node:assert/strict";
import { unlink, writeFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { deferred } from "../../../base/async.js";
import { describeError, isKataError } from "../../../base/errors.js";
import { WatchingLogger, qmpFixture, reply, send, type Msg } from "../../../../test/helpers/qmp-peer.js";
import { QmpClient, type QmpEvent } from "./client.js";
import { defaultMaxLineBytes } from "./line-decoder.js";

const testTimeoutMs = 10_000;

describe("QmpClient", () => {
  const { sock, peer, client } = qmpFixture(testTimeoutMs);

  it("reads the greeting and negotiates capabilities before anything else", { timeout: testTimeoutMs }, async () => {
    const p = await peer();

    await client();

    assert.deepEqual(p.commands(), ["qmp_capabilities"]);
  });

  it("maps a QMP error to a KataError naming the command and QEMU's desc", { timeout: testTimeoutMs }, async () => {
    await peer((msg, conn) => {
      const error =
        msg["execute"] === "nope"
          ? { class: "CommandNotFound", desc: "The command nope has not been found" }
          : { class: "GenericError", desc: "Duplicate device ID 'blk0'" };
      send(conn, { error, id: msg["id"] });
    });
    const c = await client();

    await assert.rejects(c.execute("device_add", { driver: "virtio-blk-pci", id: "blk0" }), (e) => {
      return isKataError(e, "INTERNAL") && e.message === "qmp device_add: Duplicate device ID 'blk0'";
    });
    await assert.rejects(c.execute("nope"), (e) => isKataError(e, "UNIMPLEMENTED"));
  });

  it(
    "delivers events to listeners and to waitEvent, with predicate and unsubscribe",
    { timeout: testTimeoutMs },
    async () => {
      await peer((msg, conn) => {
        send(conn, { event: "STOP", timestamp: { seconds: 1, microseconds: 2 } });
        send(conn, { event: "MIGRATION", data: { status: "setup" } });
        send(conn, { event: "MIGRATION", data: { status: "completed" } });
        reply(conn, msg);
      });
      const c = await client();
      const seen: string[] = [];
      const off = c.onEvent((e) => seen.push(e.event));
      const isCompleted = (e: QmpEvent): boolean => JSON.stringify(e.data) === '{"status":"completed"}';
      const completed = c.waitEvent("MIGRATION", isCompleted);

      await c.execute("stop");
      const e = await completed;
      off();
      await c.execute("stop");

      assert.deepEqual(e.data, { status: "completed" });
      assert.deepEqual(seen, ["STOP", "MIGRATION", "MIGRATION"]);
    },
  );

  it(
    "retries while the socket does not exist and connects once the peer listens",
    { timeout: testTimeoutMs },
    async () => {
      const logger = new WatchingLogger();
      const connecting = client({ logger });

      await logger.seen("qmp connect retry");
      const p = await peer();
      await connecting;

      assert.match(String(logger.messages[0]?.fields?.["err"]), /ENOENT/);
      assert.deepEqual(p.commands(), ["qmp_capabilities"]);
    },
  );

  it("retries ECONNREFUSED from a path that is not listening yet", { timeout: testTimeoutMs }, async () => {
    await writeFile(sock(), "");
    const logger = new WatchingLogger();
    const connecting = client({ logger });

    await logger.seen("qmp connect retry");
    await unlink(sock());
    await peer();
    await connecting;

    assert.match(String(logger.messages[0]?.fields?.["err"]), /ECONNREFUSED/);
  });

  it(
    "gives up with CANCELLED when the signal aborts, keeping the last connect error",
    { timeout: testTimeoutMs },
    async () => {
      const logger = new WatchingLogger();
      const ac = new AbortController();
      const connecting = QmpClient.connect(sock(), { signal: ac.signal, logger });

      await logger.seen("qmp connect retry");
      ac.abort();

      await assert.rejects(connecting, (e) => isKataError(e, "CANCELLED") && /ENOENT/.test(describeError(e)));
    },
  );

  it("rejects pending commands with UNAVAILABLE when the peer closes", { timeout: testTimeoutMs }, async () => {
    await peer((_msg, conn) => {
      conn.destroy();
    });
    const c = await client();
    const event = c.waitEvent("SHUTDOWN");

    await assert.rejects(
      c.execute("query-status"),
      (e) => isKataError(e, "UNAVAILABLE") && e.message === "qmp query-status: connection closed",
    );
    await c.closed;
    await assert.rejects(event, (e) => isKataError(e, "UNAVAILABLE"));
    await assert.rejects(c.execute("stop"), (e) => isKataError(e, "UNAVAILABLE"));
  });

  it("closes on a line longer than 1 MiB and rejects the pending command", { timeout: testTimeoutMs }, async () => {
    await peer((_msg, conn) => {
      conn.write("x".repeat(defaultMaxLineBytes + 1));
    });
    const c = await client();

    await assert.rejects(c.execute("query-qmp-schema"), (e) => {
      return (
        isKataError(e, "UNAVAILABLE") && describeError(e).includes(`line longer than ${defaultMaxLineBytes} bytes`)
      );
    });
    await c.closed;
  });

  it("accepts a line of exactly 1 MiB", { timeout: testTimeoutMs }, async () => {
    const envelope = JSON.stringify({ return: "", id: 2 }).length;
    await peer((msg, conn) => {
      reply(conn, msg, "y".repeat(defaultMaxLineBytes - envelope));
    });
    const c = await client();

    const ret = await c.execute<string>("big");

    assert.equal(ret.length, defaultMaxLineBytes - envelope);
  });

  it("closes on invalid JSON", { timeout: testTimeoutMs }, async () => {
    await peer((_msg, conn) => {
      conn.write("{not json\n");
    });
    const c = await client();

    await assert.rejects(c.execute("query-status"), (e) => describeError(e).includes("invalid JSON line"));
    await c.closed;
  });

  it("gives the next reply to the next caller after a command was abandoned", { timeout: testTimeoutMs }, async () => {
    const slow = deferred<Msg>();
    await peer((msg, conn) => {
      // Like QEMU, answer strictly in order: the slow reply goes out just before the fast one.
      if (msg["execute"] === "slow") {
        slow.resolve(msg);
        return;
      }
      void slow.promise.then((s) => {
        reply(conn, s, "slow");
        reply(conn, msg, "fast");
      });
    });
    const c = await client();
    const ac = new AbortController();

    const abandoned = c.execute("slow", undefined, { signal: ac.signal });
    ac.abort();
    await assert.rejects(abandoned, (e) => isKataError(e, "CANCELLED"));
    const fast = await c.execute("fast");

    assert.equal(fast, "fast");
  });

  it("closes on a reply whose id is not the oldest pending command", { timeout: testTimeoutMs }, async () => {
    await peer((msg, conn) => {
      send(conn, { return: {}, id: Number(msg["id"]) + 100 });
    });
    const c = await client();

    await assert.rejects(c.execute("query-status"), (e) => {
      return isKataError(e, "UNAVAILABLE") && describeError(e).includes("unexpected reply id");
    });
    await c.closed;
  });
});
