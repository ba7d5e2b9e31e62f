// What a pod's network namespace holds, read with iproute2's JSON output (there is no maintained netlink
// library for Node): the interfaces a VM can carry (veth and physical), their addresses, the routes and
// the static neighbours. parseScan is pure and golden-tested on real `ip -j` output; scanNetns runs the
// five commands inside the namespace. Kata: virtcontainers/network_linux.go (createEndpointsFromScan,
// infoFromLink, validGuestRoute, validGuestNeighbor).

import { abortError } from "../base/async.js";
import { Code, KataError, messageOf } from "../base/errors.js";
import { describeExit } from "../platform/process.js";
import type { NetnsPort } from "./netns.js";

export type IpFamily = "v4" | "v6";

export interface ScannedAddress {
  readonly family: IpFamily;
  readonly address: string;
  readonly prefixLength: number;
}

export interface Endpoint {
  readonly name: string;
  /** "veth" (CNI's usual link) or "physical" (a device moved into the namespace: no link kind). */
  readonly kind: "veth" | "physical";
  readonly ifindex: number;
  readonly mac: string;
  readonly mtu: number;
  /** Transmit queue length (CNI's bridge plugin makes veths with 0; iproute2 omits 0). */
  readonly txqlen: number;
  /** iproute2's flag names (UP, NOARP, ...). */
  readonly flags: readonly string[];
  readonly addresses: readonly ScannedAddress[];
}

export interface ScannedRoute {
  /** "default", or a prefix: a host route gets its /32 or /128. */
  readonly dest: string;
  readonly gateway?: string;
  readonly device: string;
  /** The preferred source address (`src` of `ip route`). */
  readonly source?: string;
  /** RT_SCOPE_*: 0 universe, 200 site, 253 link, 254 host. */
  readonly scope: number;
  readonly family: IpFamily;
}

export interface ScannedNeighbor {
  readonly address: string;
  readonly family: IpFamily;
  readonly device: string;
  readonly lladdr: string;
}

export interface ScannedNetns {
  readonly endpoints: readonly Endpoint[];
  readonly routes: readonly ScannedRoute[];
  readonly neighbors: readonly ScannedNeighbor[];
  /** Taps named like ours (tap<N>_kata) found in the namespace: an earlier setup is still there. */
  readonly existingTaps: readonly string[];
  /** What was left out and why, naming the interface or route; for the log. */
  readonly warnings: readonly string[];
}

/** The raw stdout of each `ip -j` command, as scanNetns runs them. */
export interface IpJsonOutput {
  /** ip -j -d link show */
  readonly link: string;
  /** ip -j addr show */
  readonly addr: string;
  /** ip -j route show table main */
  readonly route4: string;
  /** ip -j -6 route show table main */
  readonly route6: string;
  /** ip -j neigh show */
  readonly neigh: string;
}

export const scanCommands: Readonly<Record<keyof IpJsonOutput, readonly string[]>> = {
  link: ["-j", "-d", "link", "show"],
  addr: ["-j", "addr", "show"],
  route4: ["-j", "route", "show", "table", "main"],
  route6: ["-j", "-6", "route", "show", "table", "main"],
  neigh: ["-j", "neigh", "show"],
};

/** A namespace with this much routing state is not a pod's; reading more would only cost memory. */
export const maxIpJsonBytes = 4 << 20;

/** The taps setupNetwork makes; a rescan must not take them for endpoints. */
export const ourTapPattern = /^tap\d+_kata$/;

const scopeNumbers: Readonly<Record<string, number>> = { global: 0, universe: 0, site: 200, link: 253, host: 254 };

/** NUD_PERMANENT: a static entry. CNI plugins' dynamic entries are learnt again by the guest (as Kata). */
const permanent = "PERMANENT";

type Json = Record<string, unknown>;

function parseArray(what: string, text: string): Json[] {
  let v: unknown;
  try {
    v = JSON.parse(text === "" ? "[]" : text);
  } catch (e) {
    throw new KataError(Code.Internal, `ip ${what}: output is not JSON: ${messageOf(e)}`);
  }
  if (!Array.isArray(v)) throw new KataError(Code.Internal, `ip ${what}: output is not a JSON array`);
  return v.map((entry: unknown, i) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new KataError(Code.Internal, `ip ${what}: entry ${i} is not an object`);
    }
    return entry as Json;
  });
}

function str(what: string, e: Json, key: string): string {
  const v = e[key];
  if (typeof v !== "string")
    throw new KataError(Code.Internal, `ip ${what}: ${key} of ${entryName(e)} is not a string`);
  return v;
}

function optStr(what: string, e: Json, key: string): string | undefined {
  return e[key] === undefined ? undefined : str(what, e, key);
}

function num(what: string, e: Json, key: string): number {
  const v = e[key];
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new KataError(Code.Internal, `ip ${what}: ${key} of ${entryName(e)} is not an integer`);
  }
  return v;
}

function strings(what: string, e: Json, key: string): string[] {
  const v = e[key] ?? [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
    throw new KataError(Code.Internal, `ip ${what}: ${key} of ${entryName(e)} is not a list of strings`);
  }
  return v;
}

function entryName(e: Json): string {
  const name = e["ifname"] ?? e["dst"];
  return typeof name === "string" ? name : "an entry";
}

function linkKind(l: Json): string | undefined {
  const info = l["linkinfo"];
  if (typeof info !== "object" || info === null) return undefined;
  const kind = (info as Json)["info_kind"];
  return typeof kind === "string" ? kind : undefined;
}

function familyOf(address: string): IpFamily {
  return address.includes(":") ? "v6" : "v4";
}

/** fe80::/10: the guest kernel makes its own link-local address and route for each interface. */
function isLinkLocalV6(address: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(address);
}

function parseAddresses(what: string, a: Json, warnings: string[]): ScannedAddress[] {
  const list = a["addr_info"] ?? [];
  if (!Array.isArray(list))
    throw new KataError(Code.Internal, `ip ${what}: addr_info of ${entryName(a)} is not a list`);
  const name = str(what, a, "ifname");
  const out: ScannedAddress[] = [];
  for (const raw of list as unknown[]) {
    if (typeof raw !== "object" || raw === null) {
      throw new KataError(Code.Internal, `ip ${what}: an addr_info entry of ${name} is not an object`);
    }
    const info = raw as Json;
    const family = str(what, info, "family");
    const address = str(what, info, "local");
    if (family !== "inet" && family !== "inet6") {
      warnings.push(`skipped address ${address} of ${name}: address family ${family} is not supported`);
      continue;
    }
    if (family === "inet6" && isLinkLocalV6(address)) continue;
    out.push({ family: family === "inet" ? "v4" : "v6", address, prefixLength: num(what, info, "prefixlen") });
  }
  return out;
}

interface Links {
  readonly endpoints: Endpoint[];
  readonly existingTaps: string[];
  /** Every other link by name, with why it was skipped (for the routes through it). */
  readonly skipped: Map<string, string>;
}

function classifyLinks(out: IpJsonOutput, warnings: string[]): Links {
  const what = "-j -d link show";
  const linkList = parseArray(what, out.link);
  const addrs = new Map<number, Json>();
  for (const a of parseArray("-j addr show", out.addr)) addrs.set(num("-j addr show", a, "ifindex"), a);
  const links: Links = { endpoints: [], existingTaps: [], skipped: new Map() };
  for (const l of linkList) {
    const name = str(what, l, "ifname");
    const kind = linkKind(l);
    const linkType = str(what, l, "link_type");
    if (linkType === "loopback") {
      links.skipped.set(name, "the loopback");
      continue;
    }
    if (kind === "tun" && ourTapPattern.test(name)) {
      links.existingTaps.push(name);
      links.skipped.set(name, "a kata-ts tap");
      continue;
    }
    const carried = kind === "veth" ? "veth" : kind === undefined && linkType === "ether" ? "physical" : undefined;
    if (carried === undefined) {
      const why = kind ?? `link type ${linkType}`;
      warnings.push(`skipped interface ${name} (${why}): only veth and physical interfaces are carried into the VM`);
      links.skipped.set(name, why);
      continue;
    }
    const ifindex = num(what, l, "ifindex");
    const a = addrs.get(ifindex);
    links.endpoints.push({
      name,
      kind: carried,
      ifindex,
      mac: str(what, l, "address"),
      mtu: num(what, l, "mtu"),
      txqlen: l["txqlen"] === undefined ? 0 : num(what, l, "txqlen"),
      flags: strings(what, l, "flags"),
      addresses: a === undefined ? [] : parseAddresses("-j addr show", a, warnings),
    });
  }
  return links;
}

function hostPrefix(dst: string, family: IpFamily): string {
  if (dst === "default" || dst.includes("/")) return dst;
  return `${dst}/${family === "v4" ? 32 : 128}`;
}

function parseRoutes(text: string, family: IpFamily, links: Links, warnings: string[]): ScannedRoute[] {
  const what = family === "v4" ? "-j route show table main" : "-j -6 route show table main";
  const carried = new Set(links.endpoints.map((e) => e.name));
  const out: ScannedRoute[] = [];
  for (const r of parseArray(what, text)) {
    const dst = str(what, r, "dst");
    const type = optStr(what, r, "type") ?? "unicast";
    // Table main holds no local or broadcast entries; multicast and anycast ones belong to the guest's own
    // stack like the kernel routes below.
    if (["local", "broadcast", "multicast", "anycast"].includes(type)) continue;
    const dev = optStr(what, r, "dev");
    if (type !== "unicast" || dev === undefined) {
      const why = type !== "unicast" ? `a ${type} route` : "a multipath route";
      warnings.push(`skipped route ${dst}: ${why} is not supported`);
      continue;
    }
    // The guest kernel adds these itself when it gets the addresses (prefix and fe80::/64 routes), and
    // adding them again fails (Kata's validGuestRoute).
    if (r["protocol"] === "kernel") continue;
    if (!carried.has(dev)) {
      const why = links.skipped.get(dev);
      if (why !== "a kata-ts tap" && why !== "the loopback") {
        warnings.push(
          `skipped route ${dst} dev ${dev}: ${dev} (${why ?? "unknown interface"}) is not carried into the VM`,
        );
      }
      continue;
    }
    const gateway = optStr(what, r, "gateway");
    const source = optStr(what, r, "prefsrc");
    const scopeName = r["scope"];
    let scope = 0;
    if (typeof scopeName === "number") scope = scopeName;
    else if (typeof scopeName === "string") {
      const known = scopeNumbers[scopeName];
      if (known === undefined)
        throw new KataError(Code.Internal, `ip ${what}: route ${dst} has unknown scope ${scopeName}`);
      scope = known;
    }
    out.push({
      dest: hostPrefix(dst, family),
      ...(gateway === undefined ? {} : { gateway }),
      device: dev,
      ...(source === undefined ? {} : { source }),
      scope,
      family,
    });
  }
  return out;
}

function parseNeighbors(text: string, links: Links): ScannedNeighbor[] {
  const what = "-j neigh show";
  const carried = new Set(links.endpoints.map((e) => e.name));
  const out: ScannedNeighbor[] = [];
  for (const n of parseArray(what, text)) {
    const lladdr = optStr(what, n, "lladdr");
    const dev = str(what, n, "dev");
    if (!strings(what, n, "state").includes(permanent) || lladdr === undefined || !carried.has(dev)) continue;
    const address = str(what, n, "dst");
    out.push({ address, family: familyOf(address), device: dev, lladdr });
  }
  return out;
}

/**
 * The namespace's carried interfaces, routes and static neighbours from `ip -j` output. Skips lo, our own
 * taps, IPv6 link-local addresses and kernel routes silently (the guest makes its own); skips other link
 * kinds, and routes through them, with a warning naming them. Throws INTERNAL on output it cannot read.
 */
export function parseScan(out: IpJsonOutput): ScannedNetns {
  const warnings: string[] = [];
  const links = classifyLinks(out, warnings);
  const routes = [...parseRoutes(out.route4, "v4", links, warnings), ...parseRoutes(out.route6, "v6", links, warnings)];
  return {
    endpoints: links.endpoints,
    routes,
    neighbors: parseNeighbors(out.neigh, links),
    existingTaps: links.existingTaps,
    warnings,
  };
}

/** Runs the five `ip -j` commands inside the namespace at `nsPath` and parses them (parseScan). */
export async function scanNetns(netns: NetnsPort, nsPath: string, signal: AbortSignal): Promise<ScannedNetns> {
  const raw: Partial<Record<keyof IpJsonOutput, string>> = {};
  for (const [key, args] of Object.entries(scanCommands) as [keyof IpJsonOutput, readonly string[]][]) {
    const cmd = `ip ${args.join(" ")}`;
    const r = await netns.run(nsPath, "ip", args, { signal, maxOutputBytes: maxIpJsonBytes + 1 });
    if (signal.aborted) throw abortError(signal, `scan network namespace ${nsPath}`);
    if (r.code !== 0) {
      throw new KataError(Code.Internal, `${cmd} in ${nsPath}: ${describeExit(r)}: ${r.stderr.trim()}`);
    }
    if (Buffer.byteLength(r.stdout) > maxIpJsonBytes) {
      throw new KataError(Code.ResourceExhausted, `${cmd} in ${nsPath}: output exceeds ${maxIpJsonBytes} bytes`);
    }
    raw[key] = r.stdout;
  }
  try {
    return parseScan({
      link: raw.link ?? "",
      addr: raw.addr ?? "",
      route4: raw.route4 ?? "",
      route6: raw.route6 ?? "",
      neigh: raw.neigh ?? "",
    });
  } catch (e) {
    throw new KataError(Code.Internal, `scan network namespace ${nsPath}`, { cause: e });
  }
}
