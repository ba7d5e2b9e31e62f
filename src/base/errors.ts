// The one error class of kata-ts and its closed set of codes. Codes follow gRPC status names so the
// shim, the agent and the CLI map them losslessly (the wire mapping lives in protocol/ttrpc/status.ts).

/** Failure kinds. */
export const Code = {
  InvalidArgument: "INVALID_ARGUMENT",
  NotFound: "NOT_FOUND",
  AlreadyExists: "ALREADY_EXISTS",
  FailedPrecondition: "FAILED_PRECONDITION",
  ResourceExhausted: "RESOURCE_EXHAUSTED",
  Unavailable: "UNAVAILABLE",
  DeadlineExceeded: "DEADLINE_EXCEEDED",
  Cancelled: "CANCELLED",
  Unimplemented: "UNIMPLEMENTED",
  Internal: "INTERNAL",
} as const;
export type Code = (typeof Code)[keyof typeof Code];

type Details = Readonly<Record<string, string | number | boolean>>;

export class KataError extends Error {
  override readonly name = "KataError";
  readonly code: Code;
  /** Facts for logs (ids, paths, pids). Never parsed for control flow. */
  readonly details: Details;
  /**
   * Failures that happened while handling this one (an undo step, a follow-up check) and that must not
   * replace it: the error keeps its own code and cause, and these ride along (Java's suppressed
   * exceptions, youki's CreateContainerError).
   */
  readonly suppressed: readonly unknown[];

  constructor(
    code: Code,
    message: string,
    options: { cause?: unknown; details?: Details; suppressed?: readonly unknown[] } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
    this.suppressed = options.suppressed ?? [];
  }
}

export function isKataError(e: unknown, code?: Code): e is KataError {
  return e instanceof KataError && (code === undefined || e.code === code);
}

/** The code of `e`; an aborted operation is CANCELLED or DEADLINE_EXCEEDED, anything foreign INTERNAL. */
export function codeOf(e: unknown): Code {
  if (e instanceof KataError) return e.code;
  if (e instanceof Error && e.name === "TimeoutError") return Code.DeadlineExceeded;
  if (e instanceof Error && e.name === "AbortError") return Code.Cancelled;
  return Code.Internal;
}

export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Renders the cause chain, then every suppressed failure found along it:
 * "start sandbox s1: boot vm: qmp connect /run/kata/s1/qmp.sock: ENOENT; also failed: undo mkdir /x: EBUSY".
 */
export function describeError(e: unknown): string {
  return describeAt(e, 0);
}

/** Suppressed errors nest (an undo whose own undo failed); past this depth they are not rendered. */
const maxDescribeDepth = 4;

function describeAt(e: unknown, depth: number): string {
  const parts: string[] = [];
  const suppressed: unknown[] = [];
  let cur: unknown = e;
  while (cur !== undefined && parts.length < 16) {
    const m = messageOf(cur);
    if (m !== "" && parts.at(-1) !== m) parts.push(m);
    if (cur instanceof KataError) suppressed.push(...cur.suppressed);
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  let text = parts.join(": ");
  if (depth < maxDescribeDepth) for (const s of suppressed) text += `; also failed: ${describeAt(s, depth + 1)}`;
  return text;
}

/** Wraps `e` with our operation's name, keeping its code. */
export function wrap(e: unknown, op: string, details?: Details): KataError {
  return new KataError(codeOf(e), op, details === undefined ? { cause: e } : { cause: e, details });
}

/**
 * `original` itself when nothing else failed; otherwise a KataError with `original` as its cause (and its
 * code, message and details) that carries the later failures as `suppressed`. For a failure whose
 * handling (an undo, a follow-up check) failed too: the first failure stays the error callers see.
 */
export function withSuppressed(original: unknown, suppressed: readonly unknown[]): unknown {
  if (suppressed.length === 0) return original;
  return new KataError(codeOf(original), messageOf(original), {
    cause: original,
    details: original instanceof KataError ? original.details : {},
    suppressed,
  });
}

/**
 * The error of a teardown that went on past its failures: named `op`, caused (and coded) by the first
 * failure, with the others as `suppressed`. Undefined when nothing failed.
 */
export function firstFailure(op: string, failures: readonly unknown[]): KataError | undefined {
  const [first, ...rest] = failures;
  if (failures.length === 0) return undefined;
  return new KataError(codeOf(first), op, { cause: first, suppressed: rest });
}

/** For states only a bug can produce. Never use for bad input: that is InvalidArgument. */
export function invariant(cond: unknown, what: string): asserts cond {
  if (!cond) throw new KataError(Code.Internal, `invariant violated: ${what}`);
}

/** The errno code of a Node system error (ENOENT, EEXIST...), or undefined. */
export function errnoOf(e: unknown): string | undefined {
  if (typeof e !== "object" || e === null || !("code" in e)) return undefined;
  const code: unknown = e.code;
  return typeof code === "string" ? code : undefined;
}

/** For `.catch()`: swallows only the named errno codes (the state we wanted), rethrows the rest. */
export function ignoreErrno(...codes: string[]): (e: unknown) => undefined {
  return (e: unknown) => {
    if (codes.includes(errnoOf(e) ?? "")) return undefined;
    throw e;
  };
}

/** For `.catch()`: swallows only KataErrors of the named codes (the state we accept), rethrows the rest. */
export function ignoreCode(...codes: Code[]): (e: unknown) => undefined {
  return (e: unknown) => {
    if (e instanceof KataError && codes.includes(e.code)) return undefined;
    throw e;
  };
}
