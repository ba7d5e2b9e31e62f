// serviceListening: a sandbox's service counts as running while something listens on its socket,
// whatever became of the pid it saved.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { access, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { serviceListening } from "./service-client.js";

describe("serviceListening", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-svc-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is true while a service listens on the socket", async () => {
    const socket = path.join(dir, "live.sock");
    const server = net.createServer((c) => c.destroy());
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      assert.equal(await serviceListening(socket), true);
    } finally {
      server.close();
    }
  });

  it("is false for the socket a killed service left behind", async () => {
    const socket = path.join(dir, "dead.sock");
    // A service SIGKILLed while listening: its socket file stays, and nobody accepts on it.
    const service = spawn(
      process.execPath,
      ["-e", `require("net").createServer().listen(${JSON.stringify(socket)}, () => console.log("up"))`],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await once(service.stdout, "data");
    service.kill("SIGKILL");
    await once(service, "exit");

    assert.equal(await serviceListening(socket), false);
    await access(socket);
  });

  it("is false when there is no socket at all", async () => {
    assert.equal(await serviceListening(path.join(dir, "missing.sock")), false);
  });
});
