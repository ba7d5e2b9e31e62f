// Composition root of the guest agent (bundled into the initrd as /opt/kata-ts/kata-ts-agent.mjs and
// started by busybox init). The only place in the guest where real ports are built.

import { readFile, writeFile } from "node:fs/promises";
import { JsonLogger } from "../base/log.js";
import { describeError } from "../base/errors.js";
import { CommandMounter } from "../platform/mount.js";
import { NodeProcessRunner, runChecked } from "../platform/process.js";
import { agentPortName } from "../protocol/guest-paths.js";
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

async function main(): Promise<void> {
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
    crun: new Crun(runner, { binary: "/usr/bin/crun", stateDir: "/run/crun" }),
    storage: new StorageManager({ mounter, logger }, guestStorageHandlers),
    logger,
    setHostname: (name) => writeFile("/proc/sys/kernel/hostname", name),
  });
  const server = new TtrpcServer({ logger });
  registerAgentService(server, agent, await imageVersion(), {
    runPs: async () => (await runChecked(runner, "ps", ["-o", "pid,user,time,args"])).stdout,
    setTime: async (sec) => {
      await runChecked(runner, "date", ["-s", `@${sec.toString()}`]);
    },
  });
  const stop = new AbortController();
  process.on("SIGTERM", () => {
    stop.abort();
  });
  await servePort(server, agentPortName, logger, stop.signal);
}

await main();
