// What the pod-network and factory tests share: waiting for a container's output, fetching from a pod
// IP, a spec edit that joins a CNI pod's network namespace, and what a namespace holds.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { delay } from "../../src/base/async.js";
import { ignoreErrno } from "../../src/base/errors.js";
import type { Spec } from "../../src/oci/spec.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import type { PodNetns } from "./cni.js";

/** Polls the container's output until it has `marker`; the output so far. */
export async function waitForOutput(file: string, marker: string, ms = 120_000): Promise<string> {
  const end = Date.now() + ms;
  let text = "";
  while (Date.now() < end) {
    text = (await readFile(file, "utf8").catch(ignoreErrno("ENOENT"))) ?? "";
    if (text.includes(marker)) return text;
    await delay(300);
  }
  assert.fail(`no "${marker}" in the container's output within ${ms} ms:\n${text}`);
}

export async function fetchText(url: string, ms = 30_000): Promise<string> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
      return await r.text();
    } catch (e) {
      last = e;
      await delay(500);
    }
  }
  throw new Error(`GET ${url}: ${String(last)}`);
}

/** Joins the CNI namespace, and may ping (CAP_NET_RAW, as Docker's default set has). */
export function joinPod(pod: PodNetns): (s: Spec) => void {
  return (s) => {
    const namespaces = (s.linux?.namespaces ?? []).filter((n) => n.type !== "network");
    s.linux = { ...s.linux, namespaces: [...namespaces, { type: "network", path: pod.nsPath }] };
    const caps = s.process?.capabilities;
    if (s.process !== undefined && caps !== undefined) {
      const add = (l: string[] | undefined): string[] => [...(l ?? []), "CAP_NET_RAW"];
      s.process.capabilities = {
        ...caps,
        bounding: add(caps.bounding),
        effective: add(caps.effective),
        permitted: add(caps.permitted),
      };
    }
  };
}

/** The netns's links (name and MAC) and qdiscs: the sandbox's tap and tc must be gone after delete. */
export async function linksAndQdiscs(nsPath: string): Promise<string> {
  const runner = new NodeProcessRunner();
  const run = async (file: string, args: string[]): Promise<string> => {
    const r = await runner.run("nsenter", [`--net=${nsPath}`, "--", file, ...args]);
    assert.equal(r.code, 0, `${file} ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const links = (JSON.parse(await run("ip", ["-j", "link", "show"])) as { ifname: string; address?: string }[])
    .map((l) => `${l.ifname} ${l.address ?? ""}`)
    .sort();
  return [...links, await run("tc", ["qdisc", "show"])].join("\n");
}
