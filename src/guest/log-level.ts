// The agent's log level, as Kata's agent takes it: `agent.log=LEVEL` on the kernel command line (what
// [agent.kata] enable_debug adds). A parameter with a dot never reaches init's environment (the kernel
// keeps it for a module), so the agent reads /proc/cmdline; KATA_TS_AGENT_LOG still works for tests.

import type { LogLevel } from "../base/log.js";

const levels: Readonly<Record<string, LogLevel>> = {
  trace: "debug",
  debug: "debug",
  info: "info",
  warn: "warn",
  warning: "warn",
  error: "error",
  critical: "error",
  fatal: "error",
  panic: "error",
};

/** The last `agent.log=` of the command line wins, as the kernel's own parameters do; default info. */
export function agentLogLevel(cmdline: string, env: string | undefined): LogLevel {
  let level: LogLevel = "info";
  for (const p of cmdline.trim().split(/\s+/)) {
    if (!p.startsWith("agent.log=")) continue;
    const l = levels[p.slice("agent.log=".length).toLowerCase()];
    if (l !== undefined) level = l;
  }
  return env === "debug" ? "debug" : level;
}
