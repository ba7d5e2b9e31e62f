// The thin side of pod networking: scan the namespace, plan, run the plan's commands in it, and take
// them back. Setup registers each command's undo as soon as it succeeded, so a failure part-way leaves
// nothing once the caller unwinds; teardown is idempotent and leaves the pod's own interfaces (veth,
// addresses, routes) exactly as the CNI plugin made them, so CNI DEL works afterwards.

import { lstat } from "node:fs/promises";
import { abortError } from "../base/async.js";
import type { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, errnoOf, firstFailure } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import { describeExit, type RunResult } from "../platform/process.js";
import type { NetnsPort } from "./netns.js";
import {
  checkModel,
  describeNetwork,
  emptyPlan,
  planNetwork,
  type NetCommand,
  type NetworkModel,
  type NetworkPlan,
} from "./plan.js";
import { ourTapPattern, scanNetns } from "./scan.js";

export interface NetworkDeps {
  readonly netns: NetnsPort;
  readonly logger: Logger;
}

/** Small outputs only (link lists, qdisc lists); a pod namespace's fit easily. */
const maxListBytes = 4 << 20;

function commandLine(c: NetCommand): string {
  return `${c.file} ${c.args.join(" ")}`;
}

function failed(c: NetCommand, iface: string, nsPath: string, r: RunResult): KataError {
  return new KataError(
    Code.Internal,
    `${commandLine(c)} (interface ${iface}) in ${nsPath}: ${describeExit(r)}: ${r.stderr.trim()}`,
    { details: { iface, nsPath } },
  );
}

async function linkNames(netns: NetnsPort, nsPath: string, signal?: AbortSignal): Promise<Set<string>> {
  const r = await netns.run(nsPath, "ip", ["-j", "link", "show"], {
    maxOutputBytes: maxListBytes,
    ...(signal === undefined ? {} : { signal }),
  });
  if (r.code !== 0) {
    throw new KataError(Code.Internal, `ip -j link show in ${nsPath}: ${describeExit(r)}: ${r.stderr.trim()}`);
  }
  let list: unknown;
  try {
    list = JSON.parse(r.stdout);
  } catch (e) {
    throw new KataError(Code.Internal, `ip -j link show in ${nsPath}: output is not JSON`, { cause: e });
  }
  if (!Array.isArray(list)) throw new KataError(Code.Internal, `ip -j link show in ${nsPath}: output is not a list`);
  const names = new Set<string>();
  for (const l of list as unknown[]) {
    const name = typeof l === "object" && l !== null ? (l as Record<string, unknown>)["ifname"] : undefined;
    if (typeof name === "string") names.add(name);
  }
  return names;
}

async function hasIngress(netns: NetnsPort, nsPath: string, dev: string): Promise<boolean> {
  const r = await netns.run(nsPath, "tc", ["-j", "qdisc", "show", "dev", dev], { maxOutputBytes: maxListBytes });
  if (r.code !== 0) {
    throw new KataError(
      Code.Internal,
      `tc -j qdisc show dev ${dev} in ${nsPath}: ${describeExit(r)}: ${r.stderr.trim()}`,
    );
  }
  let list: unknown;
  try {
    list = JSON.parse(r.stdout === "" ? "[]" : r.stdout);
  } catch (e) {
    throw new KataError(Code.Internal, `tc -j qdisc show dev ${dev} in ${nsPath}: output is not JSON`, { cause: e });
  }
  return (
    Array.isArray(list) && list.some((q: unknown) => (q as Record<string, unknown> | null)?.["kind"] === "ingress")
  );
}

/** A namespace that is gone took its taps and qdiscs with it. */
async function nsGone(nsPath: string): Promise<boolean> {
  try {
    await lstat(nsPath);
    return false;
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return true;
    throw new KataError(Code.Internal, `lstat ${nsPath}`, { cause: e });
  }
}

/** Whether what an undo command removes is still there: the tap (ip link del), or the ingress qdisc. */
async function undoNeeded(netns: NetnsPort, nsPath: string, c: NetCommand, iface: string): Promise<boolean> {
  if (!(await linkNames(netns, nsPath)).has(iface)) return false;
  return c.file === "tc" ? hasIngress(netns, nsPath, iface) : true;
}

/**
 * Runs an undo command unless its work is done already: teardown, the namespace's deletion or whoever
 * removed the veth may have got there first, and undo and teardown must both be safe to run.
 */
async function undoCommand(netns: NetnsPort, nsPath: string, c: NetCommand, iface: string): Promise<void> {
  if (await nsGone(nsPath)) return;
  if (!(await undoNeeded(netns, nsPath, c, iface))) return;
  const r = await netns.run(nsPath, c.file, c.args);
  if (r.code !== 0 && (await undoNeeded(netns, nsPath, c, iface))) throw failed(c, iface, nsPath, r);
}

/**
 * Connects the pod's interfaces in the namespace at `nsPath` to taps under `model`, and returns the plan
 * (QEMU NICs, agent messages, links for teardown). Every step that succeeded is undone by `undo`: on a
 * failure the caller unwinds it, on success it keeps it with the sandbox (or calls teardownNetwork with
 * `plan.links`). "none" touches nothing. Errors name the command, the interface, the path and stderr.
 */
export async function setupNetwork(
  deps: NetworkDeps,
  nsPath: string,
  model: NetworkModel,
  undo: CleanupStack,
  signal: AbortSignal,
): Promise<NetworkPlan> {
  checkModel(model);
  if (model === "none") return emptyPlan;
  await deps.netns.checkJoinable(nsPath, signal);
  const plan = planNetwork(await scanNetns(deps.netns, nsPath, signal), model);
  for (const w of plan.warnings) deps.logger.warn(`network: ${w}`, { op: "setupNetwork", nsPath });
  for (const op of plan.ops) {
    const back = op.undo;
    const deferUndo = (): void => {
      if (back !== undefined) {
        undo.defer(`${commandLine(back)} in ${nsPath}`, () => undoCommand(deps.netns, nsPath, back, op.iface));
      }
    };
    // A tap is ours by name (the scan found none), so its undo goes first: a command killed by an abort
    // may still have made it. A veth's qdisc is undone only once we know we added it.
    const ours = ourTapPattern.test(op.iface);
    if (ours) deferUndo();
    const r = await deps.netns.run(nsPath, op.file, op.args, { signal });
    if (r.code === 0 && !ours) deferUndo();
    if (signal.aborted) throw abortError(signal, `${commandLine(op)} in ${nsPath}`);
    if (r.code !== 0) throw failed(op, op.iface, nsPath, r);
  }
  deps.logger.info(`network: ${describeNetwork(plan)}`, { op: "setupNetwork", nsPath });
  return plan;
}

/**
 * Removes what setupNetwork made for `links` in the namespace at `nsPath`: the veth's ingress qdisc
 * (and with it its filter) and the tap (with its own qdisc and filter). Idempotent: a namespace, tap or
 * qdisc already gone is fine. The veths, their addresses and routes are not touched. Every link is tried;
 * the first failure is thrown with the others suppressed.
 */
export async function teardownNetwork(
  deps: NetworkDeps,
  nsPath: string,
  links: readonly { readonly veth: string; readonly tap: string }[],
): Promise<void> {
  if (links.length === 0) return;
  // The links come back from saved state: never delete an interface that is not one of our taps.
  const foreign = links.find((l) => !ourTapPattern.test(l.tap));
  if (foreign !== undefined) {
    throw new KataError(Code.InvalidArgument, `tear down network in ${nsPath}: ${foreign.tap} is not a kata-ts tap`);
  }
  if (await nsGone(nsPath)) return;
  await removeAll(
    deps,
    nsPath,
    links.map((l) => l.veth),
    links.map((l) => l.tap),
  );
  deps.logger.debug("network: torn down", { op: "teardownNetwork", nsPath, links: links.map((l) => l.tap).join(",") });
}

/** Deletes the ingress qdisc of each of `veths` (its filters go with it), then each of `taps`. */
async function removeAll(
  deps: NetworkDeps,
  nsPath: string,
  veths: readonly string[],
  taps: readonly string[],
): Promise<void> {
  const steps: [NetCommand, string][] = [
    ...veths.map((v): [NetCommand, string] => [{ file: "tc", args: ["qdisc", "del", "dev", v, "ingress"] }, v]),
    ...taps.map((t): [NetCommand, string] => [{ file: "ip", args: ["link", "del", t] }, t]),
  ];
  const failures: unknown[] = [];
  for (const [c, iface] of steps) {
    try {
      await undoCommand(deps.netns, nsPath, c, iface);
    } catch (e) {
      failures.push(e);
    }
  }
  const failure = firstFailure(`tear down network in ${nsPath}`, failures);
  if (failure !== undefined) throw failure;
}

/** The devices the ingress filters of `dev` redirect to (tc's JSON: options.actions[].to_dev). */
async function redirectTargets(netns: NetnsPort, nsPath: string, dev: string): Promise<string[]> {
  const r = await netns.run(nsPath, "tc", ["-j", "filter", "show", "dev", dev, "ingress"], {
    maxOutputBytes: maxListBytes,
  });
  if (r.code !== 0) {
    throw new KataError(
      Code.Internal,
      `tc -j filter show dev ${dev} ingress in ${nsPath}: ${describeExit(r)}: ${r.stderr.trim()}`,
    );
  }
  let list: unknown;
  try {
    list = JSON.parse(r.stdout === "" ? "[]" : r.stdout);
  } catch (e) {
    throw new KataError(Code.Internal, `tc -j filter show dev ${dev} ingress in ${nsPath}: output is not JSON`, {
      cause: e,
    });
  }
  if (!Array.isArray(list)) return [];
  const targets: string[] = [];
  for (const f of list as unknown[]) {
    const actions = (f as { options?: { actions?: unknown } } | null)?.options?.actions;
    if (!Array.isArray(actions)) continue;
    for (const a of actions as unknown[]) {
      const to = (a as { to_dev?: unknown } | null)?.to_dev;
      if (typeof to === "string") targets.push(to);
    }
  }
  return targets;
}

/**
 * Stale cleanup when the links were never saved (a runtime killed during setupNetwork): removes every
 * tap named like ours and the ingress qdisc of every interface whose ingress filter redirects to one of
 * them, leaving everything else. Returns the interfaces it changed. Idempotent, like teardownNetwork.
 */
export async function sweepNetwork(deps: NetworkDeps, nsPath: string): Promise<string[]> {
  if (await nsGone(nsPath)) return [];
  const names = [...(await linkNames(deps.netns, nsPath))];
  const taps = names.filter((n) => ourTapPattern.test(n));
  if (taps.length === 0) return [];
  const veths: string[] = [];
  for (const dev of names.filter((n) => !ourTapPattern.test(n))) {
    if ((await redirectTargets(deps.netns, nsPath, dev)).some((t) => ourTapPattern.test(t))) veths.push(dev);
  }
  await removeAll(deps, nsPath, veths, taps);
  deps.logger.info("network: removed what an earlier setup left", {
    op: "sweepNetwork",
    nsPath,
    links: [...veths, ...taps].join(","),
  });
  return [...veths, ...taps];
}
