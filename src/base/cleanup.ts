// Undo log for multi-step setup: steps are undone in reverse order, and a failed undo never hides
// the error that triggered it (youki's CreateContainerError, crun's cleanup_* attributes).

import { KataError, codeOf, describeError } from "./errors.js";

export class CleanupStack {
  readonly #undo: Array<{ what: string; fn: () => Promise<void> | void }> = [];

  defer(what: string, fn: () => Promise<void> | void): void {
    this.#undo.push({ what, fn });
  }

  get size(): number {
    return this.#undo.length;
  }

  /** Setup succeeded: the caller now owns everything; nothing will be undone. */
  release(): void {
    this.#undo.length = 0;
  }

  /** Moves every pending undo step onto `other` (ownership passes to a longer-lived object). */
  transferTo(other: CleanupStack): void {
    for (const step of this.#undo) other.defer(step.what, step.fn);
    this.#undo.length = 0;
  }

  /** Runs every undo step (used for normal teardown); returns the failures, never throws. */
  async runAll(): Promise<string[]> {
    const failures: string[] = [];
    const steps = this.#undo.splice(0).reverse();
    for (const { what, fn } of steps) {
      try {
        await fn();
      } catch (e) {
        failures.push(`${what}: ${describeError(e)}`);
      }
    }
    return failures;
  }

  /** Undo everything, then rethrow `original`; undo failures wrap it, never replace it. */
  async unwind(original: unknown): Promise<never> {
    const failures = await this.runAll();
    if (failures.length === 0) throw original;
    throw new KataError(codeOf(original), describeError(original), {
      cause: new KataError(codeOf(original), `undo after failure also failed (${failures.join("; ")})`),
    });
  }

  /** Teardown: run every step and throw one error naming every failure. */
  async close(op: string): Promise<void> {
    const failures = await this.runAll();
    if (failures.length > 0) throw new KataError(codeOf(undefined), `${op}: ${failures.join("; ")}`);
  }
}
