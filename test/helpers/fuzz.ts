// Settings shared by the property-based fuzz tests (src/**/*.fuzz.test.ts). The unit tier runs each
// property with a fixed seed and a few hundred runs, so it is reproducible and fast; `npm run fuzz`
// raises the runs, and a failure's seed can be replayed:
//   KATA_TS_FUZZ_RUNS=20000 KATA_TS_FUZZ_SEED=<seed> node --test --test-name-pattern=fuzz dist/src

import assert from "node:assert/strict";
import { Code, KataError, isKataError } from "../../src/base/errors.js";

/** "kata" in ASCII: any fixed value would do, it only has to be the same on every run. */
const defaultSeed = 0x6b617461;

function envInt(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) {
    throw new KataError(Code.InvalidArgument, `${name}=${JSON.stringify(raw)} is not an integer`);
  }
  return n;
}

/**
 * fc.assert parameters: `defaultRuns` runs (KATA_TS_FUZZ_RUNS overrides) from a fixed seed
 * (KATA_TS_FUZZ_SEED overrides). Each test names its own default so that slow properties stay cheap.
 */
export function fuzzParams(defaultRuns: number): { seed: number; numRuns: number } {
  return { seed: envInt("KATA_TS_FUZZ_SEED") ?? defaultSeed, numRuns: envInt("KATA_TS_FUZZ_RUNS") ?? defaultRuns };
}

/**
 * Runs `f`; returns its result, or the KataError it threw. Anything else thrown (a TypeError from a
 * missing check, a RangeError) fails the property with what was thrown.
 */
export function onlyKataError<T>(f: () => T): { ok: true; value: T } | { ok: false; error: KataError } {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    assert.ok(isKataError(e), `expected a KataError, got ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return { ok: false, error: e };
  }
}

/** onlyKataError for async functions. */
export async function onlyKataErrorAsync<T>(
  f: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: KataError }> {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    assert.ok(isKataError(e), `expected a KataError, got ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return { ok: false, error: e };
  }
}
