// The logger interface injected from the composition roots: JSON lines with fixed field names.
// Logging is never a dependency of a lifecycle operation: a failed write is dropped, not thrown.

import { describeError, codeOf } from "./errors.js";

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

/** The `err` log field: code plus the rendered cause chain. */
export function errField(e: unknown): { code: string; message: string } {
  return { code: codeOf(e), message: describeError(e) };
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
    const rec = { time: new Date().toISOString(), level, msg, ...this.#fields, ...fields };
    let line: string;
    if (this.#format === "json") {
      line = JSON.stringify(rec);
    } else {
      const extra = Object.entries({ ...this.#fields, ...fields })
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
        .join(" ");
      line = `${rec.time} ${level} ${msg}${extra === "" ? "" : " " + extra}`;
    }
    try {
      this.#write(line + "\n");
    } catch {
      // Logging must never fail an operation (there is no /dev/log here, and pipes break).
      return;
    }
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
