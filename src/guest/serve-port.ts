// Serves the agent's ttRPC service on the virtio-serial port for the life of the VM. The host may
// close and reopen its end at any time (a restarted service, a VM restored from a template): each
// connection is served until it ends, then the port is reopened.

import { delay } from "../base/async.js";
import { describeError } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import type { TtrpcServer } from "../protocol/ttrpc/server.js";
import { readFile } from "node:fs/promises";
import { findPort, openPort } from "./port.js";

/** Seconds since the guest booted: boot phases appear in the console log with it. */
async function uptimeSeconds(): Promise<number> {
  return Number((await readFile("/proc/uptime", "utf8").catch(() => "0")).split(" ")[0]);
}

/** While the host end is closed the port reads as hung up at once: poll at this pace, not in a spin. */
const reopenDelayMs = 50;
const findRetryMs = 20;

export async function servePort(
  server: TtrpcServer,
  portName: string,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  let device: string | undefined;
  for (let tries = 0; device === undefined; tries++) {
    device = await findPort(portName);
    if (device === undefined) {
      if (tries === 100) logger.warn("agent port not found yet", { port: portName });
      await delay(findRetryMs, signal);
    }
  }
  logger.info("serving", { port: portName, device, uptimeS: await uptimeSeconds(), nodeUptimeS: process.uptime() });
  let quietReopens = 0;
  while (!signal.aborted) {
    const started = Date.now();
    try {
      const socket = openPort(device);
      await server.serve(socket);
    } catch (e) {
      logger.warn("agent port failed", { device, err: describeError(e) });
    }
    // A session that lasted is worth a log line; the hang-up polls while the host is away are not.
    if (Date.now() - started > 1000) {
      logger.info("host disconnected", { device });
      quietReopens = 0;
    } else if (++quietReopens % 200 === 0) {
      logger.debug("waiting for the host", { device });
    }
    await delay(reopenDelayMs, signal).catch(() => undefined);
  }
}
