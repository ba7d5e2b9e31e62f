// The typed QMP commands against a scripted peer: arguments on the wire, answers checked, quit's close.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isKataError } from "../../../base/errors.js";
import { qmpFixture, reply, send } from "../../../../test/helpers/qmp-peer.js";
import { migrate, queryStatus, quit, setMigrationCapabilities, waitMigration } from "./commands.js";

const testTimeoutMs = 10_000;

describe("QMP commands", () => {
  const { peer, client } = qmpFixture(testTimeoutMs);

  it("resolves a command with its return value and sends arguments and an id", { timeout: testTimeoutMs }, async () => {
    const p = await peer((msg, conn) => {
      reply(conn, msg, { status: "running", singlestep: false, running: true });
    });
    const c = await client();

    const status = await queryStatus(c);
    await setMigrationCapabilities(c, { "x-ignore-shared": true });

    assert.deepEqual(status, { status: "running", running: true });
    assert.equal(typeof p.received[1]?.["id"], "number");
    assert.deepEqual(p.received[2]?.["arguments"], { capabilities: [{ capability: "x-ignore-shared", state: true }] });
  });

  it("refuses a query-status answer of the wrong shape", { timeout: testTimeoutMs }, async () => {
    await peer((msg, conn) => {
      reply(conn, msg, { status: 3 });
    });
    const c = await client();

    await assert.rejects(queryStatus(c), (e) => isKataError(e, "INTERNAL") && e.message.includes("unexpected answer"));
  });

  it("treats the connection closing after quit as success", { timeout: testTimeoutMs }, async () => {
    const p = await peer((_msg, conn) => {
      send(conn, { event: "SHUTDOWN", data: { guest: false, reason: "host-qmp-quit" } });
      conn.destroy();
    });
    const c = await client();

    await quit(c);
    await c.closed;

    assert.deepEqual(p.commands(), ["qmp_capabilities", "quit"]);
  });

  it("fails quit on a connection that was already closed", { timeout: testTimeoutMs }, async () => {
    await peer();
    const c = await client();
    c.close();
    await c.closed;

    await assert.rejects(quit(c), (e) => isKataError(e, "UNAVAILABLE") && e.message === "qmp quit: connection closed");
  });

  it(
    "waits for a migration to complete, and reports a failed one with QEMU's error",
    { timeout: testTimeoutMs },
    async () => {
      const statuses = [{}, { status: "setup" }, { status: "active" }, { status: "completed", "total-time": 28 }];
      const p = await peer((msg, conn) => {
        if (msg["execute"] === "query-migrate")
          reply(conn, msg, statuses.shift() ?? { status: "failed", "error-desc": "disk full" });
        else reply(conn, msg);
      });
      const c = await client();

      await migrate(c, "exec:cat > /tmp/state");
      const done = await waitMigration(c, AbortSignal.timeout(testTimeoutMs));

      assert.deepEqual(done, { status: "completed", "total-time": 28 });
      assert.deepEqual(p.received[1]?.["arguments"], { uri: "exec:cat > /tmp/state" });
      await assert.rejects(waitMigration(c, AbortSignal.timeout(testTimeoutMs)), (e) => {
        return isKataError(e, "INTERNAL") && e.message === "qmp migrate: failed: disk full";
      });
    },
  );
});
