// The logger interface injected from the composition roots: JSON lines with fixed field names.
// Logging is never a dependency of a lifecycle operation: it never throws, whatever the fields hold
// (BigInt, cycles, Errors, throwing getters), and a failed write is dropped.

import { Code, describeError, codeOf } from "./errors.js";

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** The `err` log field: code plus the rendered cause chain. Never throws, whatever `e` is. */
export function errField(e: unknown): { code: string; message: string } {
  try {
    return { code: codeOf(e), message: describeError(e) };
  } catch {
    // A thrown value whose message getter or toString throws: still a line, not a second failure.
    return { code: Code.Internal, message: "[error that cannot be described]" };
  }
}

/** Nesting below this depth is cut: a log line is for people, and a deep value could overflow the stack. */
const maxDepth = 16;

/**
 * `v` as a value JSON.stringify renders without throwing: BigInt as its decimal string, an Error as the
 * `err` field shape, a cycle as "[Circular]", Map and Set as object and array, `toJSON` applied (Date).
 * Only the objects on the path from the root count as cycles: a value shared by two fields is repeated.
 */
export function toLoggable(v: unknown, ancestors: object[] = []): unknown {
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "symbol") return v.toString();
  if (typeof v === "function") return `[function ${v.name}]`;
  if (typeof v !== "object" || v === null) return v;
  if (ancestors.includes(v)) return "[Circular]";
  if (ancestors.length >= maxDepth) return "[Too deep]";
  const path = [...ancestors, v];
  try {
    if (v instanceof Error) return errField(v);
    const toJSON: unknown = "toJSON" in v ? v.toJSON : undefined;
    if (typeof toJSON === "function") {
      const j: unknown = Reflect.apply(toJSON, v, []);
      return j === v ? "[Circular]" : toLoggable(j, path);
    }
    if (Array.isArray(v)) return v.map((x) => toLoggable(x, path));
    if (v instanceof Set) return [...v].map((x) => toLoggable(x, path));
    const entries = v instanceof Map ? [...v.entries()].map(([k, x]) => [String(k), x] as const) : Object.entries(v);
    return Object.fromEntries(entries.map(([k, x]) => [k, toLoggable(x, path)]));
  } catch (e) {
    // A throwing getter, toJSON or proxy trap: say so in the line rather than lose the line.
    return `[unloggable: ${errField(e).message}]`;
  }
}

/** JSON text for any value; never throws. */
export function loggableJson(v: unknown): string {
  // JSON.stringify(undefined) is undefined, not text; toLoggable maps every other value to JSON.
  return JSON.stringify(toLoggable(v) ?? null);
}

export class JsonLogger implements Logger {
  readonly #write: (line: string) => void;
  readonly #min: number;
  readonly #fields: LogFields;
  readonly #format: "json" | "text";

  constructor(
    write: (line: string) => void,
    opts: { level?: LogLevel; fields?: LogFields; format?: "json" | "text" } = {},
  ) {
    this.#write = write;
    this.#min = rank[opts.level ?? "info"];
    this.#fields = opts.fields ?? {};
    this.#format = opts.format ?? "json";
  }

  #log(level: LogLevel, msg: string, fields: LogFields | undefined): void {
    if (rank[level] < this.#min) return;
    const time = new Date().toISOString();
    let line: string;
    try {
      line = this.#format === "json" ? this.#json(time, level, msg, fields) : this.#text(time, level, msg, fields);
    } catch (e) {
      // Only a field object whose own getters throw gets here (toLoggable contains everything below it).
      line = loggableJson({ time, level, msg, logError: errField(e) });
    }
    try {
      this.#write(line + "\n");
    } catch {
      // Logging must never fail an operation (there is no /dev/log here, and pipes break).
      return;
    }
  }

  #json(time: string, level: LogLevel, msg: string, fields: LogFields | undefined): string {
    return loggableJson({ time, level, msg, ...this.#fields, ...fields });
  }

  #text(time: string, level: LogLevel, msg: string, fields: LogFields | undefined): string {
    const extra = Object.entries({ ...this.#fields, ...fields })
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : loggableJson(v)}`)
      .join(" ");
    return `${time} ${level} ${msg}${extra === "" ? "" : " " + extra}`;
  }

  debug(msg: string, fields?: LogFields): void {
    this.#log("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#log("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#log("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#log("error", msg, fields);
  }
  child(fields: LogFields): Logger {
    return new JsonLogger(this.#write, {
      // CAST: rank's keys are exactly the log levels.
      level: (Object.keys(rank) as LogLevel[]).find((l) => rank[l] === this.#min) ?? "info",
      fields: { ...this.#fields, ...fields },
      format: this.#format,
    });
  }
}

/** A logger that drops everything (tests, pure callers). */
export const nullLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return nullLogger;
  },
};
