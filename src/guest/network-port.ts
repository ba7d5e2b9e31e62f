// The guest's real NetPort: busybox `ip` and `arp` (the image links both to /bin/busybox) and sysfs.
// Built only in cli/agent-main.ts.

import { randomUUID } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { delay } from "../base/async.js";
import { Code, KataError, errnoOf, wrap } from "../base/errors.js";
import { describeExit, type ProcessRunner } from "../platform/process.js";
import type { LinkAttr, NetCommand, NetPort, NetResult } from "./network.js";

/** `ip` output beyond this is dropped: a guest listing more is broken, and the agent's memory is small. */
const maxToolOutputBytes = 1 << 20;
/** busybox `ip` answers in milliseconds; a batch that hangs must not hold the network lock for ever. */
const toolTimeoutMs = 10_000;

export class BusyboxNetPort implements NetPort {
  readonly #runner: ProcessRunner;
  readonly #sysClassNet: string;

  constructor(runner: ProcessRunner, opts: { sysClassNet?: string } = {}) {
    this.#runner = runner;
    this.#sysClassNet = opts.sysClassNet ?? "/sys/class/net";
  }

  async run(commands: readonly NetCommand[]): Promise<NetResult[]> {
    // Markers on stdout split the commands' outputs; a fresh nonce keeps any output from forging one.
    const nonce = randomUUID();
    const script = commands.map((c, i) => {
      const line = [`/bin/${c.tool}`, ...c.args].map(shellQuote).join(" ");
      const onFailure = c.mayFail === true ? `echo '${nonce} failed'` : "exit 97";
      return `echo '${nonce} ${i}'\n${line} || ${onFailure}\n`;
    });
    const signal = AbortSignal.timeout(toolTimeoutMs);
    const r = await this.#runner.run("/bin/sh", ["-c", script.join("")], {
      maxOutputBytes: maxToolOutputBytes,
      signal,
    });
    const results: { stdout: string; failed?: boolean }[] = [];
    for (const line of r.stdout.replace(/\n$/, "").split("\n")) {
      if (line.startsWith(`${nonce} `)) {
        const tag = line.slice(nonce.length + 1);
        const last = results.at(-1);
        if (tag === "failed" && last !== undefined) last.failed = true;
        else results.push({ stdout: "" });
        continue;
      }
      const last = results.at(-1);
      if (last !== undefined) last.stdout += `${line}\n`;
    }
    if (r.code !== 0 || results.length !== commands.length) {
      const failed = commands[Math.max(0, results.length - 1)];
      const what = failed === undefined ? "network commands" : [failed.tool, ...failed.args].join(" ");
      if (signal.aborted) throw new KataError(Code.DeadlineExceeded, `${what}: no answer in ${toolTimeoutMs} ms`);
      throw new KataError(Code.Internal, `${what}: ${r.code === 97 ? "failed" : describeExit(r)}: ${r.stderr.trim()}`);
    }
    return results;
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
    const file = path.join("/proc/sys", key);
    try {
      await writeFile(file, value);
    } catch (e) {
      throw wrap(e, `write ${value} to ${file}`);
    }
  }

  delay(ms: number): Promise<void> {
    return delay(ms);
  }
}

/** `s` as one single-quoted shell word. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}
