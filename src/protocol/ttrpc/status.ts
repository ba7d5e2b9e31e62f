// The one place where kata-ts error codes meet gRPC numeric status codes (style.md §4.4): servers
// turn a thrown value into a wire status here, clients turn a wire status back into a KataError.

import { Code, KataError, codeOf, describeError } from "../../base/errors.js";

/** google.rpc.Code OK: a Response whose status is absent or has this code succeeded. */
export const statusOk = 0;

const wireCode: Readonly<Record<Code, number>> = {
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
};

const codeFromWire = new Map<number, Code>(
  // CAST: Object.entries widens the keys to string; they are exactly the Code values of wireCode.
  Object.entries(wireCode).map(([code, n]) => [n, code as Code]),
);

export interface WireStatus {
  readonly code: number;
  readonly message: string;
}

/** The status a server sends for a thrown value: its code (INTERNAL when foreign) and cause chain. */
export function toWireStatus(e: unknown): { code: number; message: string } {
  return { code: wireCode[codeOf(e)], message: describeError(e) };
}

/**
 * The error a client raises for a non-OK status: the peer's code (INTERNAL for numbers we do not
 * know, and for OK, which is not an error), our operation as the message, the peer's text as cause.
 */
export function fromWireStatus(status: WireStatus, op: string): KataError {
  const code = codeFromWire.get(status.code) ?? Code.Internal;
  return new KataError(code, op, {
    cause: new KataError(code, status.message),
    details: { wireCode: status.code },
  });
}
