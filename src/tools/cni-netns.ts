// A pod network namespace made the way containerd's CRI plugin makes one, for tests, the benchmark and the
// docs: `ip netns add`, then the node's CNI network (a conflist) run plugin by plugin as libcni does, and
// the loopback network on `lo`; released with CNI DEL in reverse order, then the namespace deleted.
// Plugins are Debian's containernetworking-plugins (1.1.1: CNI spec 0.1.0 to 1.0.0) in /usr/lib/cni.

import { readdir, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, ignoreErrno } from "../base/errors.js";
import { describeExit, runChecked, type ProcessRunner } from "../platform/process.js";

export const defaultCniPath = "/usr/lib/cni";
/** Where host-local keeps one file per reserved address, per network name. */
export const hostLocalDataDir = "/var/lib/cni/networks";
export const cniVersion = "1.0.0";

/** A network configuration list (the file in /etc/cni/net.d): plugins run in order on ADD. */
export interface CniConflist {
  readonly cniVersion: string;
  readonly name: string;
  readonly plugins: readonly Readonly<Record<string, unknown>>[];
}

export interface BridgeNetworkOptions {
  /** The network's name: host-local keeps its reservations under /var/lib/cni/networks/<name>. */
  readonly name: string;
  /** The host bridge (at most 15 characters); it gets the gateway address. */
  readonly bridge: string;
  /** IPv4 CIDR the pods' addresses come from, e.g. 10.88.0.0/24 (the first host address is the gateway). */
  readonly subnet: string;
  readonly mtu?: number;
}

/** A node's bridge network: bridge (gateway on the host, no masquerade) with host-local IPAM. */
export function bridgeConflist(o: BridgeNetworkOptions): CniConflist {
  if (o.bridge.length > 15) {
    throw new KataError(Code.InvalidArgument, `bridge: ${o.bridge} is longer than 15 characters (IFNAMSIZ)`);
  }
  if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(o.subnet)) {
    throw new KataError(Code.InvalidArgument, `subnet: ${o.subnet} is not an IPv4 CIDR`);
  }
  return {
    cniVersion,
    name: o.name,
    plugins: [
      {
        type: "bridge",
        bridge: o.bridge,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ...(o.mtu === undefined ? {} : { mtu: o.mtu }),
        ipam: { type: "host-local", ranges: [[{ subnet: o.subnet }]], routes: [{ dst: "0.0.0.0/0" }] },
      },
    ],
  };
}

/** containerd's CRI plugin brings `lo` up with this network before the pod's own. */
export const loopbackConflist: CniConflist = {
  cniVersion,
  name: "cni-loopback",
  plugins: [{ type: "loopback" }],
};

/** The CNI result (spec 1.0.0), the fields we read. */
export interface CniResult {
  readonly cniVersion?: string;
  readonly interfaces?: readonly { name: string; mac?: string; sandbox?: string }[];
  readonly ips?: readonly { address: string; gateway?: string; interface?: number }[];
  readonly routes?: readonly { dst: string; gw?: string }[];
  readonly dns?: unknown;
}

/** What libcni writes on a plugin's stdin: the plugin's entry, the list's name and version, prevResult. */
export function pluginStdin(list: CniConflist, index: number, prevResult: CniResult | undefined): string {
  const plugin = list.plugins[index];
  if (plugin === undefined) throw new KataError(Code.InvalidArgument, `${list.name}: no plugin ${index}`);
  return JSON.stringify({
    ...plugin,
    cniVersion: list.cniVersion,
    name: list.name,
    ...(prevResult === undefined ? {} : { prevResult }),
  });
}

export interface PodAddress {
  readonly ip: string;
  readonly prefixLength: number;
  readonly gateway: string;
  readonly mac: string;
}

/** The pod's IPv4 address, gateway and MAC on `ifName` in `netnsPath`, from a bridge ADD's result. */
export function podAddressOf(result: CniResult, netnsPath: string, ifName: string): PodAddress {
  const ifaces = result.interfaces ?? [];
  const idx = ifaces.findIndex((i) => i.name === ifName && i.sandbox === netnsPath);
  const iface = ifaces[idx];
  if (iface === undefined) {
    throw new KataError(Code.Internal, `CNI result has no interface ${ifName} in ${netnsPath}`);
  }
  const ip = (result.ips ?? []).find((a) => a.interface === idx && a.address.includes("."));
  if (ip === undefined) throw new KataError(Code.Internal, `CNI result has no IPv4 address for ${ifName}`);
  const [addr = "", len = ""] = ip.address.split("/");
  return { ip: addr, prefixLength: Number(len), gateway: ip.gateway ?? "", mac: iface.mac ?? "" };
}

export interface CniRuntime {
  readonly containerId: string;
  readonly netnsPath: string;
  readonly ifName: string;
  /** CNI_ARGS, as containerd passes them (K8S_POD_NAME, ...). */
  readonly args?: string;
}

type CniCommand = "ADD" | "DEL" | "CHECK";

/** Runs a conflist's plugins as libcni does (ADD in order with prevResult; DEL in reverse with the cached result). */
export class CniRunner {
  readonly #runner: Pick<ProcessRunner, "run">;
  readonly #cniPath: string;

  constructor(deps: { runner: Pick<ProcessRunner, "run"> }, cniPath: string = defaultCniPath) {
    this.#runner = deps.runner;
    this.#cniPath = cniPath;
  }

  async add(list: CniConflist, rt: CniRuntime): Promise<CniResult> {
    let prev: CniResult | undefined;
    for (let i = 0; i < list.plugins.length; i++) {
      prev = await this.#exec("ADD", list, i, rt, prev);
    }
    return prev ?? {};
  }

  /** DEL with the result ADD returned (undefined when ADD never finished: plugins must cope, per the spec). */
  async del(list: CniConflist, rt: CniRuntime, cached: CniResult | undefined): Promise<void> {
    for (let i = list.plugins.length - 1; i >= 0; i--) await this.#exec("DEL", list, i, rt, cached);
  }

  async #exec(
    cmd: CniCommand,
    list: CniConflist,
    index: number,
    rt: CniRuntime,
    prev: CniResult | undefined,
  ): Promise<CniResult | undefined> {
    const type = String(list.plugins[index]?.["type"]);
    const bin = path.join(this.#cniPath, type);
    if (!existsSync(bin)) {
      throw new KataError(
        Code.NotFound,
        `CNI plugin ${type} not found in ${this.#cniPath} (apt-get install containernetworking-plugins)`,
      );
    }
    const r = await this.#runner.run(bin, [], {
      input: pluginStdin(list, index, prev),
      env: {
        PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin",
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: rt.containerId,
        CNI_NETNS: rt.netnsPath,
        CNI_IFNAME: rt.ifName,
        CNI_PATH: this.#cniPath,
        ...(rt.args === undefined ? {} : { CNI_ARGS: rt.args }),
      },
    });
    if (r.code !== 0) {
      // A plugin reports its failure as a JSON error on stdout ({code, msg, details}).
      let msg = r.stderr.trim();
      try {
        const e = JSON.parse(r.stdout) as { msg?: string; details?: string };
        msg = [e.msg, e.details, msg].filter((s) => s !== undefined && s !== "").join(": ");
      } catch {
        msg = [r.stdout.trim(), msg].filter((s) => s !== "").join(": ");
      }
      throw new KataError(Code.Internal, `CNI ${cmd} ${list.name} (${type}): ${describeExit(r)}: ${msg}`, {
        details: { containerId: rt.containerId, netns: rt.netnsPath },
      });
    }
    if (cmd !== "ADD") return undefined;
    // CAST: a successful ADD prints its result (CNI spec, "Success").
    return JSON.parse(r.stdout) as CniResult;
  }
}

export interface PodNetns extends PodAddress {
  readonly name: string;
  readonly nsPath: string;
  readonly containerId: string;
  readonly result: CniResult;
  /** CNI DEL (the pod's network, then loopback), then `ip netns delete`. Idempotent. */
  release(): Promise<void>;
}

export interface PodNetnsOptions {
  readonly network: CniConflist;
  /** The namespace's name under /var/run/netns (also the CNI container id). */
  readonly name: string;
  readonly ifName?: string;
  readonly cniPath?: string;
}

/** `ip netns add`, loopback ADD, the network's ADD; undone when a step fails. */
export async function createPodNetns(deps: { runner: ProcessRunner }, o: PodNetnsOptions): Promise<PodNetns> {
  const cni = new CniRunner(deps, o.cniPath);
  const nsPath = path.join("/var/run/netns", o.name);
  const rt: CniRuntime = {
    containerId: o.name,
    netnsPath: nsPath,
    ifName: o.ifName ?? "eth0",
    args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${o.name};K8S_POD_INFRA_CONTAINER_ID=${o.name}`,
  };
  const lo: CniRuntime = { ...rt, ifName: "lo" };
  const undo = new CleanupStack();
  let result: CniResult | undefined;
  try {
    await runChecked(deps.runner, "ip", ["netns", "add", o.name]);
    undo.defer(`ip netns delete ${o.name}`, async () => {
      await runChecked(deps.runner, "ip", ["netns", "delete", o.name]);
    });
    const loResult = await cni.add(loopbackConflist, lo);
    undo.defer(`CNI DEL ${loopbackConflist.name}`, () => cni.del(loopbackConflist, lo, loResult));
    // DEL is deferred before ADD: a plugin that failed halfway may have left a veth or a reservation.
    undo.defer(`CNI DEL ${o.network.name}`, () => cni.del(o.network, rt, result));
    result = await cni.add(o.network, rt);
    const address = podAddressOf(result, nsPath, rt.ifName);
    const steps = new CleanupStack();
    undo.transferTo(steps);
    return {
      name: o.name,
      nsPath,
      containerId: o.name,
      result,
      ...address,
      release: () => steps.close(`release pod netns ${o.name}`),
    };
  } catch (e) {
    return undo.unwind(e);
  }
}

/**
 * Removes what a bridge network leaves on the node after its last pod: the bridge (the plugin never deletes
 * it) and host-local's directory (its lock and last-reserved files). Refuses while addresses are reserved.
 */
export async function removeBridgeNetwork(
  deps: { runner: ProcessRunner },
  o: Pick<BridgeNetworkOptions, "name" | "bridge">,
  dataDir: string = hostLocalDataDir,
): Promise<void> {
  const dir = path.join(dataDir, o.name);
  const reserved = await reservedAddresses(dir);
  if (reserved.length > 0) {
    throw new KataError(Code.FailedPrecondition, `${dir}: addresses still reserved: ${reserved.join(", ")}`);
  }
  const link = await deps.runner.run("ip", ["link", "delete", o.bridge, "type", "bridge"]);
  if (link.code !== 0 && !/Cannot find device/.test(link.stderr)) {
    throw new KataError(Code.Internal, `ip link delete ${o.bridge}: ${describeExit(link)}: ${link.stderr.trim()}`);
  }
  await rm(dir, { recursive: true, force: true });
}

/** host-local's reservation files in `dir` (one per address, named by it); [] when the dir is absent. */
export async function reservedAddresses(dir: string): Promise<string[]> {
  const names = (await readdir(dir).catch(ignoreErrno("ENOENT"))) ?? [];
  return names.filter((n) => /^[\d.]+$|:/.test(n)).sort();
}
