// Undo log for multi-step setup: steps are undone in reverse order, and a failed undo never hides
// the error that triggered it (youki's CreateContainerError, crun's cleanup_* attributes).

import { KataError, codeOf, firstFailure, withSuppressed } from "./errors.js";

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

  /**
   * Runs every step, most recent first (normal teardown). Never throws: returns one KataError per failed
   * step, named after the step, with the step's error as its cause and its code.
   */
  async runAll(): Promise<KataError[]> {
    const failures: KataError[] = [];
    const steps = this.#undo.splice(0).reverse();
    for (const { what, fn } of steps) {
      try {
        await fn();
      } catch (e) {
        failures.push(new KataError(codeOf(e), what, { cause: e }));
      }
    }
    return failures;
  }

  /**
   * Undoes everything, then throws `original` itself when every step succeeded. Otherwise it throws a
   * KataError with `original` as its cause (and its code, message and details) that carries the failed
   * steps as `suppressed`: the failure that started the unwinding stays the error callers see.
   */
  async unwind(original: unknown): Promise<never> {
    throw withSuppressed(original, await this.runAll());
  }

  /**
   * Teardown: runs every step, then throws if any failed: a KataError named `op` whose cause (and code) is
   * the first failure, with the others as `suppressed`.
   */
  async close(op: string): Promise<void> {
    const failed = firstFailure(op, await this.runAll());
    if (failed !== undefined) throw failed;
  }
}
