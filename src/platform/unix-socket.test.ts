// dialUnix against real unix sockets in a temp dir: connect, refuse, retry until a listener appears, give up.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { deferred } from "../base/async.js";
import { describeError, isKataError } from "../base/errors.js";
import { dialUnix, notReadyErrnos } from "./unix-socket.js";

const testTimeoutMs = 10_000;

describe("dialUnix", () => {
  let dir = "";
  let sock = "";
  const servers: Server[] = [];
  const sockets: Socket[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "unix-socket-test-"));
    sock = join(dir, "s.sock");
  });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const s of servers.splice(0)) {
      await new Promise<void>((resolve) => {
        s.close(() => {
          resolve();
        });
      });
    }
    await rm(dir, { recursive: true, force: true });
  });

  async function listen(onConnection: (c: Socket) => void = () => undefined): Promise<Server> {
    const server = createServer((c) => {
      sockets.push(c);
      onConnection(c);
    });
    servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(sock, resolve);
    });
    return server;
  }

  it("connects to a listening socket", { timeout: testTimeoutMs }, async () => {
    const accepted = deferred<Socket>();
    await listen((c) => {
      accepted.resolve(c);
    });

    const s = await dialUnix(sock, { signal: AbortSignal.timeout(testTimeoutMs), op: "test dial" });
    sockets.push(s);
    s.write("hi");
    const peer = await accepted.promise;
    const got = await new Promise<string>((resolve) =>
      peer.once("data", (d: Buffer) => {
        resolve(d.toString());
      }),
    );

    assert.equal(got, "hi");
  });

  it("refuses a missing socket with UNAVAILABLE naming the path, without retrying", async () => {
    let retries = 0;

    await assert.rejects(
      dialUnix(sock, { signal: new AbortController().signal, op: "test dial", onRetry: () => retries++ }),
      (e) =>
        isKataError(e, "UNAVAILABLE") &&
        e.message === `test dial ${sock}: not listening` &&
        describeError(e).includes("ENOENT"),
    );
    assert.equal(retries, 0);
  });

  it("refuses a path nobody listens on (ECONNREFUSED) the same way", async () => {
    await writeFile(sock, "");

    await assert.rejects(
      dialUnix(sock, { signal: new AbortController().signal, op: "test dial" }),
      (e) =>
        isKataError(e, "UNAVAILABLE") && e.message.endsWith(": not listening") && /ECONNREFUSED/.test(describeError(e)),
    );
  });

  it("does not retry an errno outside retryWhile, and reports one other than ENOENT/ECONNREFUSED as INTERNAL", async () => {
    await writeFile(join(dir, "file"), "");
    const path = join(dir, "file", "s.sock");

    await assert.rejects(
      dialUnix(path, { signal: AbortSignal.timeout(testTimeoutMs), op: "test dial", retryWhile: notReadyErrnos }),
      (e) => isKataError(e, "INTERNAL") && e.message === `test dial ${path}` && /ENOTDIR/.test(describeError(e)),
    );
  });

  it("retries while the socket is missing and connects once it listens", { timeout: testTimeoutMs }, async () => {
    const errors: string[] = [];
    const firstRetry = deferred<undefined>();

    const dialing = dialUnix(sock, {
      signal: AbortSignal.timeout(testTimeoutMs),
      op: "test dial",
      retryWhile: notReadyErrnos,
      backoffMs: { first: 1, max: 5 },
      onRetry: (e) => {
        errors.push(describeError(e));
        firstRetry.resolve(undefined);
      },
    });
    await firstRetry.promise;
    await listen();
    sockets.push(await dialing);

    assert.match(errors[0] ?? "", /ENOENT/);
  });

  it("gives up with CANCELLED when the signal aborts while retrying, keeping the last error", async () => {
    const ac = new AbortController();

    const dialing = dialUnix(sock, {
      signal: ac.signal,
      op: "test dial",
      retryWhile: notReadyErrnos,
      onRetry: () => {
        ac.abort();
      },
    });

    await assert.rejects(
      dialing,
      (e) =>
        isKataError(e, "CANCELLED") && e.message === `test dial ${sock}: cancelled` && /ENOENT/.test(describeError(e)),
    );
  });

  it("gives up with DEADLINE_EXCEEDED when a timeout signal fires", { timeout: testTimeoutMs }, async () => {
    await assert.rejects(
      dialUnix(sock, { signal: AbortSignal.timeout(30), op: "test dial", retryWhile: notReadyErrnos }),
      (e) => isKataError(e, "DEADLINE_EXCEEDED") && e.message === `test dial ${sock}: timed out`,
    );
  });

  it("does not dial with an already aborted signal", async () => {
    let connections = 0;
    await listen(() => connections++);
    const ac = new AbortController();
    ac.abort();

    await assert.rejects(dialUnix(sock, { signal: ac.signal, op: "test dial" }), (e) => isKataError(e, "CANCELLED"));
    assert.equal(connections, 0);
  });

  it("destroys the half-open socket when aborted before it connected", { timeout: testTimeoutMs }, async () => {
    const closed = deferred<undefined>();
    await listen((c) => {
      c.on("close", () => {
        closed.resolve(undefined);
      });
    });
    const ac = new AbortController();

    const dialing = dialUnix(sock, { signal: ac.signal, op: "test dial" });
    ac.abort();

    await assert.rejects(dialing, (e) => isKataError(e, "CANCELLED"));
    await closed.promise;
  });
});
