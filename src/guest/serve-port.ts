// Serves the agent's ttRPC service on the virtio-serial port for the life of the VM. The host may
// close and reopen its end at any time (a restarted service, a VM restored from a template): each
// connection is served until it ends, then the port is reopened.

import { delay } from "../base/async.js";
import { Code, isKataError } from "../base/errors.js";
import { errField, type Logger } from "../base/log.js";
import type { TtrpcServer } from "../protocol/ttrpc/server.js";
import { readFile } from "node:fs/promises";
import { findPort, openPort } from "./port.js";

/** Seconds since the guest booted (boot phases appear in the console log with it); undefined if unreadable. */
async function uptimeSeconds(logger: Logger): Promise<number | undefined> {
  try {
    return Number((await readFile("/proc/uptime", "utf8")).split(" ")[0]);
  } catch (e) {
    logger.debug("read /proc/uptime", { err: errField(e) });
    return undefined;
  }
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
  const uptimeS = await uptimeSeconds(logger);
  logger.info("serving", { port: portName, device, uptimeS, nodeUptimeS: process.uptime() });
  let quietReopens = 0;
  while (!signal.aborted) {
    const started = Date.now();
    try {
      const socket = openPort(device);
      await server.serve(socket);
    } catch (e) {
      logger.warn("agent port failed", { device, err: errField(e) });
    }
    // A session that lasted is worth a log line; the hang-up polls while the host is away are not.
    if (Date.now() - started > 1000) {
      logger.info("host disconnected", { device });
      quietReopens = 0;
    } else if (++quietReopens % 200 === 0) {
      logger.debug("waiting for the host", { device });
    }
    try {
      await delay(reopenDelayMs, signal);
    } catch (e) {
      // delay() fails only when `signal` aborts, which is how this loop ends.
      if (isKataError(e, Code.Cancelled) || isKataError(e, Code.DeadlineExceeded)) break;
      throw e;
    }
  }
}
