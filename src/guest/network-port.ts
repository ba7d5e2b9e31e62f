// The guest's real NetPort: busybox `ip` and `arp` (the image links both to /bin/busybox) and sysfs.
// Built only in cli/agent-main.ts.

import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { delay } from "../base/async.js";
import { errnoOf } from "../base/errors.js";
import { runChecked, type ProcessRunner } from "../platform/process.js";
import type { LinkAttr, NetPort, NetTool } from "./network.js";

/** `ip` output beyond this is dropped: a guest listing more is broken, and the agent's memory is small. */
const maxToolOutputBytes = 1 << 20;
/** busybox `ip` answers in milliseconds; one that hangs must not hold the network lock for ever. */
const toolTimeoutMs = 10_000;

export class BusyboxNetPort implements NetPort {
  readonly #runner: ProcessRunner;
  readonly #sysClassNet: string;

  constructor(runner: ProcessRunner, opts: { sysClassNet?: string } = {}) {
    this.#runner = runner;
    this.#sysClassNet = opts.sysClassNet ?? "/sys/class/net";
  }

  async run(tool: NetTool, args: readonly string[]): Promise<string> {
    const r = await runChecked(this.#runner, `/bin/${tool}`, args, {
      maxOutputBytes: maxToolOutputBytes,
      signal: AbortSignal.timeout(toolTimeoutMs),
    });
    return r.stdout;
  }

  linkNames(): Promise<string[]> {
    return readdir(this.#sysClassNet);
  }

  async linkAttr(name: string, attr: LinkAttr): Promise<string | undefined> {
    try {
      return (await readFile(path.join(this.#sysClassNet, name, attr), "utf8")).trim();
    } catch (e) {
      // A link renamed or removed between the listing and this read.
      if (errnoOf(e) === "ENOENT") return undefined;
      throw e;
    }
  }

  async setSysctl(key: string, value: string): Promise<void> {
    await writeFile(path.join("/proc/sys", key), value);
  }

  delay(ms: number): Promise<void> {
    return delay(ms);
  }
}
