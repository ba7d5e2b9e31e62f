// Composition root of the guest agent, started by busybox init. The only place in the guest where real
// ports are built. Bundled twice (src/image/bundle-agent.ts): as ESM (/opt/kata-ts/kata-ts-agent.mjs)
// and as CommonJS, from which the image builder makes a V8 startup snapshot (/opt/kata-ts/agent.blob)
// that skips loading and compiling the bundle at every boot. So: no top-level await (CommonJS has
// none), and nothing may open a handle before main() runs (a snapshot cannot hold one).

import { readFile, writeFile } from "node:fs/promises";
import v8 from "node:v8";
import { JsonLogger } from "../base/log.js";
import { describeError } from "../base/errors.js";
import { CommandMounter } from "../platform/mount.js";
import { NodeProcessRunner, runChecked } from "../platform/process.js";
import { agentPortName, guestPsColumns } from "../protocol/guest-paths.js";
import { TtrpcServer } from "../protocol/ttrpc/server.js";
import { Agent } from "../guest/agent.js";
import { Crun } from "../guest/crun.js";
import { servePort } from "../guest/serve-port.js";
import { registerAgentService } from "../guest/service.js";
import { StorageManager, guestStorageHandlers } from "../guest/storage.js";

async function imageVersion(): Promise<string> {
  try {
    const meta: unknown = JSON.parse(await readFile("/etc/kata-ts-image.json", "utf8"));
    if (typeof meta === "object" && meta !== null && "inputsHash" in meta && typeof meta.inputsHash === "string") {
      return `kata-ts-agent image ${meta.inputsHash.slice(0, 12)}`;
    }
  } catch {
    return "kata-ts-agent (no image metadata)";
  }
  return "kata-ts-agent";
}

async function main(startedFrom: "snapshot" | "bundle"): Promise<void> {
  const logger = new JsonLogger((line) => process.stderr.write(line), {
    level: process.env["KATA_TS_AGENT_LOG"] === "debug" ? "debug" : "info",
    fields: { source: "agent" },
  });
  process.on("uncaughtException", (e) => {
    logger.error("uncaught exception: exiting (init restarts the agent)", { err: describeError(e) });
    process.exit(1);
  });
  process.on("unhandledRejection", (e) => {
    logger.error("unhandled rejection", { err: describeError(e) });
  });
  const runner = new NodeProcessRunner();
  const mounter = new CommandMounter(runner);
  const agent = new Agent({
    crun: new Crun(runner, { binary: "/usr/bin/crun", stateDir: "/run/crun", ttyHelper: "/usr/bin/kata-ts-tty" }),
    storage: new StorageManager({ mounter, logger }, guestStorageHandlers),
    logger,
    setHostname: (name) => writeFile("/proc/sys/kernel/hostname", name),
  });
  // The serial port has no connection boundaries the agent can always see: a host that reconnects
  // quickly starts its stream ids at 1 on what looks like the same connection.
  const server = new TtrpcServer({ logger, newClientOnStreamOne: true });
  registerAgentService(server, agent, await imageVersion(), {
    runPs: async () => (await runChecked(runner, "ps", ["-o", guestPsColumns])).stdout,
    setTime: async (sec) => {
      await runChecked(runner, "date", ["-s", `@${sec.toString()}`]);
    },
  });
  const stop = new AbortController();
  process.on("SIGTERM", () => {
    stop.abort();
  });
  // The "serving" line says how the agent started: the boot benchmark reads it.
  await servePort(server, agentPortName, logger.child({ startedFrom }), stop.signal);
}

function run(startedFrom: "snapshot" | "bundle"): void {
  main(startedFrom).catch((e: unknown) => {
    process.stderr.write(`kata-ts agent: ${describeError(e)}\n`);
    process.exit(1);
  });
}

// Building the snapshot runs this file up to here (every module loaded, nothing started); the guest's
// `node --snapshot-blob` then starts at run().
if (v8.startupSnapshot.isBuildingSnapshot()) {
  v8.startupSnapshot.setDeserializeMainFunction(() => {
    run("snapshot");
  });
} else {
  run("bundle");
}
