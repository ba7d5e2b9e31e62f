// The caller's side of a container on a terminal: the local tty goes raw (the guest's pty does the
// line discipline), and its size follows the local window (SIGWINCH -> ResizePty).

import { errField, type Logger } from "../base/log.js";
import type { TaskApi } from "./service-client.js";

export interface AttachedTerminal {
  /** Puts the local terminal back as it was. */
  restore(): void;
}

export function attachTerminal(task: TaskApi, id: string, execId: string, log: Logger): AttachedTerminal {
  const stdin = process.stdin;
  const wasRaw = stdin.isTTY && stdin.isRaw;
  if (stdin.isTTY) stdin.setRawMode(true);
  const resize = (): void => {
    const out = process.stdout;
    if (!out.isTTY) return;
    task.resizePty({ id, execId, width: out.columns, height: out.rows }).catch((e: unknown) => {
      // A resize racing the process's exit is harmless: the next one (if any) corrects the size.
      log.debug("resize terminal", { containerId: id, execId, err: errField(e) });
    });
  };
  process.on("SIGWINCH", resize);
  resize();
  return {
    restore() {
      process.off("SIGWINCH", resize);
      if (stdin.isTTY) stdin.setRawMode(wasRaw);
    },
  };
}

/** The local window's size as a runtime-spec consoleSize, when stdout is a terminal. */
export function localConsoleSize(): { height: number; width: number } | undefined {
  const out = process.stdout;
  return out.isTTY ? { height: out.rows, width: out.columns } : undefined;
}
