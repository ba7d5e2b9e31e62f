import assert from "node:assert/strict";
import { test } from "node:test";
import { concurrently, delay } from "./async.js";

test("concurrently runs the steps at once and returns when all are done", async () => {
  const order: string[] = [];
  const t0 = performance.now();
  await concurrently(
    [
      async (s) => {
        await delay(60, s);
        order.push("slow");
      },
      async (s) => {
        await delay(10, s);
        order.push("fast");
      },
    ],
    new AbortController().signal,
  );
  assert.deepEqual(order, ["fast", "slow"]);
  // One after the other would take 70 ms or more.
  assert.ok(performance.now() - t0 < 68, "the steps overlapped");
});

test("concurrently throws the first failure, after aborting and awaiting the others", async () => {
  let sawAbort = false;
  let settled = false;
  const boom = new Error("first");
  await assert.rejects(
    concurrently(
      [
        async (s) => {
          try {
            await delay(10_000, s);
          } catch (e) {
            sawAbort = s.aborted;
            await delay(20);
            settled = true;
            throw e;
          }
        },
        async () => {
          await delay(5);
          throw boom;
        },
      ],
      new AbortController().signal,
    ),
    (e) => e === boom,
  );
  assert.equal(sawAbort, true, "the other step's signal aborted");
  assert.equal(settled, true, "the other step settled before concurrently returned");
});

test("concurrently passes the caller's abort on to every step", async () => {
  const ctl = new AbortController();
  const run = concurrently([(s) => delay(10_000, s), (s) => delay(10_000, s)], ctl.signal);
  ctl.abort();
  await assert.rejects(run, /cancelled/);
});
