// The guest's logs in the host's log, when debugging ([agent.kata] enable_debug, [runtime] enable_debug or
// --debug): every guest console line, the agent's JSON lines among them, becomes a host log line carrying
// the sandbox id (and the container id the agent named). The guest is untrusted: its fields never replace
// the host's (they are nested under `guest`), control characters are escaped, and a sandbox forwards at
// most a budget of bytes, after which it says so once and forwards nothing more (the console log keeps
// the rest, capped).

import type { LogFields, LogLevel, Logger } from "../base/log.js";

/** What one sandbox may write into the host log from its guest: a chatty guest must not fill the host's disk. */
export const defaultGuestLogBudgetBytes = 16 * 1024 * 1024;

export interface GuestLogEntry {
  readonly level: LogLevel;
  readonly msg: string;
  readonly fields: LogFields;
}

const levels: readonly LogLevel[] = ["debug", "info", "warn", "error"];
/** What the agent's JsonLogger writes itself; the host writes its own. */
const ownKeys = new Set(["time", "level", "msg"]);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Control characters escaped (a line could otherwise forge or hide lines in a text log or a terminal). */
export function printable(s: string): string {
  return s.replace(/[\p{Cc}]/gu, (c) =>
    c === "\t" ? c : `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, "0")}`,
  );
}

/** A container id the agent named, if it looks like one (ids are checked on the way in; the guest may lie). */
function containerIdOf(v: unknown): string | undefined {
  return typeof v === "string" && /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}$/.test(v) ? v : undefined;
}

/**
 * One console line as a host log entry: an agent JSON line keeps its message, its container id lifted (the
 * host adds the sandbox id), its other fields under `guest`; any other line is "guest console", the line in
 * `line`. Levels: the guest's warn and error stay; its debug lines are written at info, marked
 * `guestLevel: "debug"`, because they are forwarded only when someone asked to debug the guest
 * ([agent.kata] enable_debug) and would otherwise be dropped by a host log at info.
 */
export function guestLogEntry(line: string): GuestLogEntry {
  let parsed: unknown;
  if (line.startsWith("{")) {
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
  }
  if (isRecord(parsed) && typeof parsed["msg"] === "string" && levels.includes(parsed["level"] as LogLevel)) {
    const rest = Object.fromEntries(Object.entries(parsed).filter(([k]) => !ownKeys.has(k)));
    const containerId = containerIdOf(parsed["containerId"]);
    const level = parsed["level"];
    return {
      level: level === "warn" || level === "error" ? level : "info",
      msg: printable(parsed["msg"]),
      fields: {
        source: "agent",
        ...(containerId === undefined ? {} : { containerId }),
        ...(level === "debug" ? { guestLevel: "debug" } : {}),
        guest: rest,
      },
    };
  }
  return { level: "info", msg: "guest console", fields: { source: "console", line: printable(line) } };
}

/**
 * Forwards console lines into `log` (a logger whose fields already name the sandbox), within a byte
 * budget. Returns the line handler for VmConfig.onConsoleLine.
 */
export function guestLogForwarder(log: Logger, budgetBytes = defaultGuestLogBudgetBytes): (line: string) => void {
  let left = budgetBytes;
  return (line) => {
    if (left <= 0) return;
    left -= line.length + 1;
    if (left <= 0) {
      log.warn("guest log forwarding stopped: budget used up (the console log keeps the latest output)", {
        budgetBytes,
      });
      return;
    }
    const e = guestLogEntry(line);
    log[e.level](e.msg, e.fields);
  };
}
