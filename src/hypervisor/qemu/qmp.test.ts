import assert from "node:assert/strict";
import { mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { deferred } from "../../base/async.js";
import { describeError, isKataError } from "../../base/errors.js";
import { nullLogger, type LogFields, type Logger } from "../../base/log.js";
import { LineDecoder, QmpClient, defaultMaxLineBytes, type QmpEvent } from "./qmp.js";

type Msg = Readonly<Record<string, unknown>>;

/** Answers (or not) one command on `conn`. */
type Script = (msg: Msg, conn: Socket) => void;

const greeting = {
  QMP: { version: { qemu: { micro: 22, minor: 2, major: 7 }, package: "test" }, capabilities: ["oob"] },
};

function send(conn: Socket, obj: unknown): void {
  conn.write(JSON.stringify(obj) + "\r\n");
}

function reply(conn: Socket, msg: Msg, ret: unknown = {}): void {
  send(conn, { return: ret, id: msg["id"] });
}

/** A scripted QMP peer on a real unix socket: greets, accepts qmp_capabilities, hands other commands to `script`. */
class QmpPeer {
  readonly received: Msg[] = [];
  readonly #conns = new Set<Socket>();
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async listen(
    path: string,
    script: Script = (msg, conn) => {
      reply(conn, msg);
    },
  ): Promise<QmpPeer> {
    const server = createServer();
    const peer = new QmpPeer(server);
    server.on("connection", (conn) => {
      peer.#conns.add(conn);
      send(conn, greeting);
      let buf = "";
      conn.on("error", () => undefined);
      conn.on("data", (d: Buffer) => {
        buf += d.toString("utf8");
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          // CAST: the client under test only sends JSON objects; a parse failure fails the test.
          const msg = JSON.parse(buf.slice(0, nl)) as Msg;
          buf = buf.slice(nl + 1);
          peer.received.push(msg);
          if (msg["execute"] === "qmp_capabilities") reply(conn, msg);
          else script(msg, conn);
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, resolve);
    });
    return peer;
  }

  commands(): unknown[] {
    return this.received.map((m) => m["execute"]);
  }

  async close(): Promise<void> {
    for (const conn of this.#conns) conn.destroy();
    await new Promise<void>((resolve) =>
      this.#server.close(() => {
        resolve();
      }),
    );
  }
}

/** Records debug messages and lets a test await the first one with a given text. */
class WatchingLogger implements Logger {
  readonly #waiters: Array<{ msg: string; seen: () => void }> = [];
  readonly messages: Array<{ msg: string; fields: LogFields | undefined }> = [];

  seen(msg: string): Promise<void> {
    if (this.messages.some((m) => m.msg === msg)) return Promise.resolve();
    const d = deferred<undefined>();
    this.#waiters.push({
      msg,
      seen: () => {
        d.resolve(undefined);
      },
    });
    return d.promise;
  }

  #log(msg: string, fields?: LogFields): void {
    this.messages.push({ msg, fields });
    for (const w of this.#waiters) if (w.msg === msg) w.seen();
  }

  debug(msg: string, fields?: LogFields): void {
    this.#log(msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#log(msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#log(msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#log(msg, fields);
  }
  child(): Logger {
    return nullLogger;
  }
}

const testTimeoutMs = 10_000;

describe("QmpClient", () => {
  let dir = "";
  let sock = "";
  const cleanups: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "qmp-test-"));
    sock = join(dir, "qmp.sock");
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await rm(dir, { recursive: true, force: true });
  });

  async function peer(script?: Script): Promise<QmpPeer> {
    const p = await QmpPeer.listen(sock, script);
    cleanups.push(() => p.close());
    return p;
  }

  async function client(opts: { logger?: Logger } = {}): Promise<QmpClient> {
    const c = await QmpClient.connect(sock, { signal: AbortSignal.timeout(testTimeoutMs), ...opts });
    cleanups.push(() => c[Symbol.asyncDispose]());
    return c;
  }

  it("reads the greeting and negotiates capabilities before anything else", { timeout: testTimeoutMs }, async () => {
    const p = await peer();

    await client();

    assert.deepEqual(p.commands(), ["qmp_capabilities"]);
  });

  it("resolves a command with its return value and sends arguments and an id", { timeout: testTimeoutMs }, async () => {
    const p = await peer((msg, conn) => {
      reply(conn, msg, { status: "running", singlestep: false, running: true });
    });
    const c = await client();

    const status = await c.queryStatus();
    await c.setMigrationCapabilities({ "x-ignore-shared": true });

    assert.deepEqual(status, { status: "running", running: true });
    assert.equal(typeof p.received[1]?.["id"], "number");
    assert.deepEqual(p.received[2]?.["arguments"], { capabilities: [{ capability: "x-ignore-shared", state: true }] });
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

      await c.stop();
      const e = await completed;
      off();
      await c.stop();

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
    await writeFile(sock, "");
    const logger = new WatchingLogger();
    const connecting = client({ logger });

    await logger.seen("qmp connect retry");
    await unlink(sock);
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
      const connecting = QmpClient.connect(sock, { signal: ac.signal, logger });

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
    await assert.rejects(c.stop(), (e) => isKataError(e, "UNAVAILABLE"));
  });

  it("treats the connection closing after quit as success", { timeout: testTimeoutMs }, async () => {
    const p = await peer((_msg, conn) => {
      send(conn, { event: "SHUTDOWN", data: { guest: false, reason: "host-qmp-quit" } });
      conn.destroy();
    });
    const c = await client();

    await c.quit();
    await c.closed;

    assert.deepEqual(p.commands(), ["qmp_capabilities", "quit"]);
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

  it(
    "waits for a migration to complete, and reports a failed one with QEMU's error",
    { timeout: testTimeoutMs },
    async () => {
      const statuses = [{}, { status: "setup" }, { status: "active" }, { status: "completed", "total-time": 28 }];
      await peer((msg, conn) => {
        if (msg["execute"] === "query-migrate")
          reply(conn, msg, statuses.shift() ?? { status: "failed", "error-desc": "disk full" });
        else reply(conn, msg);
      });
      const c = await client();

      await c.migrate("exec:cat > /tmp/state");
      const done = await c.waitMigration(AbortSignal.timeout(testTimeoutMs));

      assert.deepEqual(done, { status: "completed", "total-time": 28 });
      await assert.rejects(c.waitMigration(AbortSignal.timeout(testTimeoutMs)), (e) => {
        return isKataError(e, "INTERNAL") && e.message === "qmp migrate: failed: disk full";
      });
    },
  );
});

describe("LineDecoder", () => {
  it("joins lines split across chunks and strips CRLF", () => {
    const d = new LineDecoder(16);

    assert.deepEqual(d.push(Buffer.from('{"a"')), []);
    assert.deepEqual(d.push(Buffer.from(':1}\r\n{"b":2}\n{')), ['{"a":1}', '{"b":2}']);
    assert.deepEqual(d.push(Buffer.from("}\n")), ["{}"]);
  });

  it("throws once an unterminated line exceeds the limit", () => {
    const d = new LineDecoder(4);

    assert.deepEqual(d.push(Buffer.from("abcd")), []);
    assert.throws(
      () => d.push(Buffer.from("e")),
      (e) => isKataError(e, "INTERNAL"),
    );
  });
});
