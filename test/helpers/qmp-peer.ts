// Test doubles for QMP: a scripted QMP peer on a real unix socket, and a logger tests can await.

import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach } from "node:test";
import { deferred } from "../../src/base/async.js";
import { nullLogger, type LogFields, type Logger } from "../../src/base/log.js";
import { QmpClient } from "../../src/hypervisor/qemu/qmp/client.js";

export type Msg = Readonly<Record<string, unknown>>;

/** Answers (or not) one command on `conn`. */
export type Script = (msg: Msg, conn: Socket) => void;

export const greeting = {
  QMP: { version: { qemu: { micro: 22, minor: 2, major: 7 }, package: "test" }, capabilities: ["oob"] },
};

export function send(conn: Socket, obj: unknown): void {
  conn.write(JSON.stringify(obj) + "\r\n");
}

export function reply(conn: Socket, msg: Msg, ret: unknown = {}): void {
  send(conn, { return: ret, id: msg["id"] });
}

/** A scripted QMP peer on a real unix socket: greets, accepts qmp_capabilities, hands other commands to `script`. */
export class QmpPeer {
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
export class WatchingLogger implements Logger {
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

/**
 * Per-test QMP plumbing for a describe block: a fresh socket path in a temp dir, and peers and clients on it
 * that are closed (in reverse order) after each test.
 */
export function qmpFixture(testTimeoutMs: number): {
  readonly sock: () => string;
  readonly peer: (script?: Script) => Promise<QmpPeer>;
  readonly client: (opts?: { logger?: Logger }) => Promise<QmpClient>;
} {
  let dir = "";
  const cleanups: Array<() => Promise<void>> = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "qmp-test-"));
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await rm(dir, { recursive: true, force: true });
  });
  const sock = (): string => join(dir, "qmp.sock");
  return {
    sock,
    peer: async (script) => {
      const p = await QmpPeer.listen(sock(), script);
      cleanups.push(() => p.close());
      return p;
    },
    client: async (opts = {}) => {
      const c = await QmpClient.connect(sock(), { signal: AbortSignal.timeout(testTimeoutMs), ...opts });
      cleanups.push(() => c[Symbol.asyncDispose]());
      return c;
    },
  };
}
