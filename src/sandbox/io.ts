// Copies a guest process's stdio between the host's streams and the agent (ReadStdout, ReadStderr,
// WriteStdin, CloseStdin). The agent returns an empty chunk only at end of stream.

import type { Readable, Writable } from "node:stream";
import { abortError } from "../base/async.js";
import { Code, isKataError } from "../base/errors.js";
import type { AgentApi } from "../agent-client/agent-client.js";

/** Bytes asked for per read: big enough for throughput, well under the 4 MiB frame limit. */
export const readChunkBytes = 1 << 20;
/** Largest stdin chunk sent in one WriteStdin. */
export const writeChunkBytes = 256 * 1024;

/** Writes `data`, waiting for room; rejects when `signal` aborts first (a reader that stopped reading). */
function write(out: Writable, data: Uint8Array, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (out.write(data)) {
      resolve();
      return;
    }
    const done = (): void => {
      out.off("drain", onDrain);
      out.off("error", onError);
      signal.removeEventListener("abort", onAbort);
    };
    const onDrain = (): void => {
      done();
      resolve();
    };
    const onError = (e: Error): void => {
      done();
      reject(e);
    };
    const onAbort = (): void => {
      done();
      reject(abortError(signal, "write output"));
    };
    out.once("drain", onDrain);
    out.once("error", onError);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Copies one output stream of a guest process to `out` until its end. */
export async function pumpOutput(
  agent: AgentApi,
  which: "stdout" | "stderr",
  ids: { containerId: string; execId: string },
  out: Writable,
  signal: AbortSignal,
  onFirstData?: () => void,
): Promise<void> {
  const read = which === "stdout" ? agent.readStdout : agent.readStderr;
  let first = true;
  for (;;) {
    const r = await read({ ...ids, len: readChunkBytes }, { signal });
    if (r.data.length === 0) return;
    if (first) {
      first = false;
      onFirstData?.();
    }
    await write(out, r.data, signal);
  }
}

/**
 * Copies `input` to the process's stdin, then closes it. Stops quietly when the process has gone
 * (its stdin closed or the container removed): a writer may outlive its reader.
 */
export async function pumpInput(
  agent: AgentApi,
  ids: { containerId: string; execId: string },
  input: Readable,
  signal: AbortSignal,
): Promise<void> {
  try {
    for await (const chunk of input) {
      if (signal.aborted) return;
      // CAST: process streams without an encoding yield Buffers.
      const buf = chunk as Buffer;
      for (let off = 0; off < buf.length; off += writeChunkBytes) {
        await agent.writeStdin({ ...ids, data: buf.subarray(off, off + writeChunkBytes) }, { signal });
      }
    }
    await agent.closeStdin(ids, { signal });
  } catch (e) {
    if (signal.aborted || isKataError(e, Code.FailedPrecondition) || isKataError(e, Code.NotFound)) return;
    throw e;
  }
}
