// Soak and load on real VMs, through the OCI CLI: pod lifecycles (a sandbox and one pod container,
// created, started, exec'd into, killed and deleted) in a row and several at once, and one service
// that serves many pod containers. After every lifecycle the leak check must hold; the per-sandbox
// service's open descriptors (and its RSS, reported only) are sampled before each delete, and one
// service's descriptor count must not grow with the containers it served.
//
// Sizes: KATA_TS_SOAK_SERIAL (lifecycles in a row, and pod containers of the one service; default 3)
// and KATA_TS_SOAK_PARALLEL (lifecycles at once; default 2). `npm run soak` runs 50 and 4.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { delay } from "../../src/base/async.js";
import { leftovers, netnsLeft, removeRunRoot } from "../helpers/cli.js";
import { requires } from "../helpers/requires.js";
import { cri, makeWorld, openFds, rssKiB, savedPids, vmTimeoutMs, type VmWorld } from "../helpers/vm-world.js";

function size(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name}=${v}: not a positive integer`);
  return n;
}

const serial = size("KATA_TS_SOAK_SERIAL", 3);
const parallel = size("KATA_TS_SOAK_PARALLEL", 2);
const sleeper = ["sleep", "100000"];

interface Sample {
  readonly fds: number;
  readonly rssKiB: number;
  readonly wallMs: number;
}

/**
 * The service's open descriptors once they stop changing (a CLI call that just returned may still
 * have its connection, or an exec's stdio, being closed): two reads 200 ms apart that agree.
 */
async function settledFds(pid: number): Promise<string[]> {
  let last = await openFds(pid);
  for (let i = 0; i < 25; i++) {
    await delay(200);
    const now = await openFds(pid);
    if (now.length === last.length) return now;
    last = now;
  }
  return last;
}

async function ok(w: VmWorld, args: string[]): Promise<string> {
  const r = await w.piped(args);
  assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  return r.stdout.toString();
}

/** create + start of a pod container in sandbox `sid`, an exec in it, then kill, wait and delete. */
async function podContainer(w: VmWorld, sid: string, cid: string, between?: () => Promise<void>): Promise<void> {
  const bundle = await w.bundle(cid, sleeper, (s) => (s.annotations = cri("container", sid)));
  const created = await w.create(cid, bundle);
  assert.equal(created.code, 0, created.stderr);
  await ok(w, ["start", cid]);
  assert.equal(await ok(w, ["exec", cid, "--", "echo", cid]), `${cid}\n`);
  await between?.();
  await ok(w, ["kill", cid, "KILL"]);
  assert.match(await ok(w, ["wait", cid]), /^137 /);
  await ok(w, ["delete", cid]);
}

/** One pod lifecycle in `w`, with the leak check after it; the service sampled before the deletes. */
async function lifecycle(w: VmWorld, sid: string): Promise<Sample> {
  const started = Date.now();
  const bundle = await w.bundle(sid, sleeper, (s) => (s.annotations = cri("sandbox", sid)));
  const created = await w.create(sid, bundle);
  assert.equal(created.code, 0, created.stderr);
  await ok(w, ["start", sid]);
  const { servicePid } = await savedPids(w.root, sid);
  let sample: { fds: number; rssKiB: number } | undefined;
  await podContainer(w, sid, `${sid}-app`, async () => {
    sample = { fds: (await settledFds(servicePid)).length, rssKiB: await rssKiB(servicePid) };
  });
  await ok(w, ["kill", sid, "KILL"]);
  assert.match(await ok(w, ["wait", sid]), /^137 /);
  await ok(w, ["delete", sid]);
  assert.deepEqual(await leftovers(w.root), [], `after ${sid}`);
  assert.deepEqual(await netnsLeft([sid]), [], `after ${sid}`);
  assert.ok(sample !== undefined);
  return { ...sample, wallMs: Date.now() - started };
}

function report(t: TestContext, what: string, samples: readonly Sample[], wallMs: number): void {
  const fds = samples.map((s) => s.fds);
  const rss = samples.map((s) => Math.round(s.rssKiB / 1024));
  const each = samples.map((s) => (s.wallMs / 1000).toFixed(1));
  t.diagnostic(`${what}: ${samples.length} in ${(wallMs / 1000).toFixed(1)} s`);
  t.diagnostic(`  lifecycle wall s: ${each.join(" ")}`);
  t.diagnostic(`  service fds: ${fds.join(" ")}`);
  t.diagnostic(`  service RSS MiB: ${rss.join(" ")}`);
}

describe("soak (real VM)", { skip: requires("root", "qemu", "image", "netns") }, () => {
  let work = "";
  const worlds: VmWorld[] = [];

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-soak-"));
  });

  after(async () => {
    for (const w of worlds) await removeRunRoot(w.root);
    await rm(work, { recursive: true, force: true });
  });

  async function world(name: string): Promise<VmWorld> {
    const w = await makeWorld(work, name);
    worlds.push(w);
    return w;
  }

  it(`runs ${serial} pod lifecycles in a row, each leaving nothing`, { timeout: serial * vmTimeoutMs }, async (t) => {
    const w = await world("serial");
    const samples: Sample[] = [];
    const started = Date.now();

    for (let i = 1; i <= serial; i++) samples.push(await lifecycle(w, `sks${process.pid}n${i}`));

    report(t, "serial lifecycles", samples, Date.now() - started);
    const first = samples[0]?.fds;
    assert.ok(
      samples.every((s) => s.fds === first),
      `every service holds as many descriptors at the same point: ${samples.map((s) => s.fds).join(" ")}`,
    );
  });

  it(`runs ${parallel} pod lifecycles at once, each leaving nothing`, { timeout: 2 * vmTimeoutMs }, async (t) => {
    const ws = await Promise.all(Array.from({ length: parallel }, (_, i) => world(`parallel${i}`)));
    const started = Date.now();

    const samples = await Promise.all(ws.map((w, i) => lifecycle(w, `skp${process.pid}n${i}`)));

    report(t, "parallel lifecycles", samples, Date.now() - started);
  });

  it(
    `serves ${serial} pod containers from one service without its descriptors growing`,
    {
      timeout: (serial + 1) * vmTimeoutMs,
    },
    async (t) => {
      const w = await world("one-service");
      const sid = `sko${process.pid}`;
      const created = await w.create(sid, await w.bundle(sid, sleeper, (s) => (s.annotations = cri("sandbox", sid))));
      assert.equal(created.code, 0, created.stderr);
      await ok(w, ["start", sid]);
      const { servicePid } = await savedPids(w.root, sid);
      const baseline = await settledFds(servicePid);
      const samples: Sample[] = [];
      const started = Date.now();

      for (let i = 1; i <= serial; i++) {
        const t0 = Date.now();
        await podContainer(w, sid, `${sid}c${i}`);
        const fds = await settledFds(servicePid);
        samples.push({ fds: fds.length, rssKiB: await rssKiB(servicePid), wallMs: Date.now() - t0 });
        assert.ok(
          fds.length <= baseline.length,
          `after pod container ${i}: ${fds.length} descriptors, ${baseline.length} before the first\n` +
            `before: ${baseline.join(", ")}\nnow: ${fds.join(", ")}`,
        );
      }

      report(t, `one service, pod containers (baseline ${baseline.length} fds)`, samples, Date.now() - started);
      await ok(w, ["delete", "--force", sid]);
      assert.deepEqual(await leftovers(w.root), []);
      assert.deepEqual(await netnsLeft([sid]), []);
    },
  );
});
