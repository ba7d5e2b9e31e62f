// scanNetns and setupNetwork over a scripted NetnsPort: which commands run where, in what order, what
// is registered for undo, and how failures read. The real commands are tested in
// test/integration/network-host.test.ts.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { CleanupStack } from "../base/cleanup.js";
import { Code, describeError, isKataError } from "../base/errors.js";
import { nullLogger } from "../base/log.js";
import type { RunOptions, RunResult } from "../platform/process.js";
import { setupNetwork } from "./apply.js";
import type { NetnsPort } from "./netns.js";
import { maxIpJsonBytes, scanNetns } from "./scan.js";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures/golden/network/cni-bridge");
const captured: Record<string, string> = Object.fromEntries(
  ["link", "addr", "route4", "route6", "neigh"].map((f) => [f, readFileSync(join(fixtures, `${f}.json`), "utf8")]),
);

function ok(stdout = ""): RunResult {
  return { code: 0, signal: null, stdout, stderr: "" };
}

/** Answers the scan's `ip -j` commands with the captured CNI bridge pod, and everything else with `other`. */
class ScriptedNetns implements NetnsPort {
  readonly runs: string[] = [];
  other: (cmd: string, opts?: Omit<RunOptions, "argv0">) => RunResult = () => ok();
  create(): Promise<string> {
    return Promise.reject(new Error("not scripted"));
  }
  remove(): Promise<void> {
    return Promise.reject(new Error("not scripted"));
  }
  checkJoinable(): Promise<void> {
    return Promise.resolve();
  }
  run(nsPath: string, file: string, args: readonly string[], opts?: Omit<RunOptions, "argv0">): Promise<RunResult> {
    const cmd = [file, ...args].join(" ");
    this.runs.push(`${nsPath}: ${cmd}`);
    const scan: Record<string, string | undefined> = {
      "ip -j -d link show": captured["link"],
      "ip -j addr show": captured["addr"],
      "ip -j route show table main": captured["route4"],
      "ip -j -6 route show table main": captured["route6"],
      "ip -j neigh show": captured["neigh"],
    };
    const out = scan[cmd];
    return Promise.resolve(out === undefined ? this.other(cmd, opts) : ok(out));
  }
}

const ns = "/var/run/netns/pod";

describe("scanNetns", () => {
  it("runs the five ip -j commands inside the namespace, with an output limit", async () => {
    const port = new ScriptedNetns();
    const limits: (number | undefined)[] = [];
    const run = port.run.bind(port);
    port.run = (p, f, a, o) => {
      limits.push(o?.maxOutputBytes);
      return run(p, f, a, o);
    };
    const scan = await scanNetns(port, ns, AbortSignal.timeout(5_000));
    assert.deepEqual(port.runs, [
      `${ns}: ip -j -d link show`,
      `${ns}: ip -j addr show`,
      `${ns}: ip -j route show table main`,
      `${ns}: ip -j -6 route show table main`,
      `${ns}: ip -j neigh show`,
    ]);
    assert.ok(limits.every((l) => l === maxIpJsonBytes + 1));
    assert.deepEqual(
      scan.endpoints.map((e) => e.name),
      ["eth0"],
    );
  });

  it("names the command, the namespace and stderr when ip fails", async () => {
    const port = new ScriptedNetns();
    port.run = () => Promise.resolve({ code: 1, signal: null, stdout: "", stderr: "nsenter: cannot open x\n" });
    await assert.rejects(
      scanNetns(port, ns, AbortSignal.timeout(5_000)),
      (e: unknown) =>
        isKataError(e, Code.Internal) &&
        e.message === `ip -j -d link show in ${ns}: exit code 1: nsenter: cannot open x`,
    );
  });

  it("refuses output over the limit, and says which namespace had bad JSON", async () => {
    const big = new ScriptedNetns();
    big.run = () => Promise.resolve(ok("[" + " ".repeat(maxIpJsonBytes) + "]"));
    await assert.rejects(
      scanNetns(big, ns, AbortSignal.timeout(5_000)),
      (e: unknown) => isKataError(e, Code.ResourceExhausted) && e.message.includes("exceeds 4194304 bytes"),
    );
    const bad = new ScriptedNetns();
    bad.run = () => Promise.resolve(ok("<html>"));
    await assert.rejects(
      scanNetns(bad, ns, AbortSignal.timeout(5_000)),
      (e: unknown) =>
        isKataError(e) &&
        describeError(e).startsWith(`scan network namespace ${ns}: ip -j -d link show: output is not JSON`),
    );
  });
});

describe("setupNetwork", () => {
  it("runs the plan's commands in order and registers the tap's and the qdisc's undo", async () => {
    const port = new ScriptedNetns();
    const undo = new CleanupStack();
    const plan = await setupNetwork(
      { netns: port, logger: nullLogger },
      ns,
      "tcfilter",
      undo,
      AbortSignal.timeout(5_000),
    );
    assert.deepEqual(
      port.runs.slice(5),
      plan.ops.map((o) => `${ns}: ${o.file} ${o.args.join(" ")}`),
    );
    assert.equal(plan.ops.length, 7, "with the txqlen of the CNI veth kept at 0");
    assert.equal(undo.size, 2);
  });

  it("fails naming the command, the interface and stderr, keeping the undo of what was done", async () => {
    const port = new ScriptedNetns();
    port.other = (cmd) =>
      cmd.startsWith("tc qdisc add dev eth0")
        ? { code: 2, signal: null, stdout: "", stderr: "Error: Exclusivity flag on, cannot modify.\n" }
        : ok();
    const undo = new CleanupStack();
    await assert.rejects(
      setupNetwork({ netns: port, logger: nullLogger }, ns, "tcfilter", undo, AbortSignal.timeout(5_000)),
      (e: unknown) =>
        isKataError(e, Code.Internal) &&
        e.message ===
          `tc qdisc add dev eth0 ingress (interface eth0) in ${ns}: exit code 2: Error: Exclusivity flag on, cannot modify.`,
    );
    assert.equal(undo.size, 1, "only the tap: the veth's qdisc was not ours");
  });

  it("keeps the tap's undo when an abort kills ip tuntap add, which may have made it", async () => {
    const port = new ScriptedNetns();
    const ctl = new AbortController();
    port.other = (cmd) => {
      if (cmd.startsWith("ip tuntap add")) {
        ctl.abort();
        return { code: null, signal: "SIGKILL", stdout: "", stderr: "" };
      }
      return ok();
    };
    const undo = new CleanupStack();
    await assert.rejects(
      setupNetwork({ netns: port, logger: nullLogger }, ns, "tcfilter", undo, ctl.signal),
      (e: unknown) => isKataError(e, Code.Cancelled),
    );
    assert.equal(undo.size, 1);
  });

  it("runs nothing for none, and nothing before refusing macvtap", async () => {
    const port = new ScriptedNetns();
    const undo = new CleanupStack();
    const plan = await setupNetwork({ netns: port, logger: nullLogger }, ns, "none", undo, AbortSignal.timeout(5_000));
    assert.deepEqual(plan.nics, []);
    await assert.rejects(
      setupNetwork({ netns: port, logger: nullLogger }, ns, "macvtap", undo, AbortSignal.timeout(5_000)),
      (e: unknown) => isKataError(e, Code.Unimplemented),
    );
    assert.deepEqual(port.runs, []);
    assert.equal(undo.size, 0);
  });
});
