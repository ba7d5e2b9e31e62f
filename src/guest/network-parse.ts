// Parsers of busybox `ip` output in the guest (busybox 1.35: no -j JSON, so text it is). Pure. Lines that
// do not parse are skipped and counted, never guessed at; the caller caps how much output it reads.

import { isIP } from "node:net";
import { IPFamily } from "../protocol/gen/types_pb.js";

export interface GuestAddress {
  readonly family: IPFamily;
  readonly address: string;
  /** Prefix length in decimal, as Kata's IPAddress.mask. */
  readonly mask: string;
}

export interface GuestRoute {
  /** "default" or a prefix ("10.88.0.0/16"); a host route keeps its /32 or /128. */
  readonly dest: string;
  readonly gateway: string;
  readonly device: string;
  readonly source: string;
  /** RT_SCOPE_*: 0 universe, 200 site, 253 link, 254 host. */
  readonly scope: number;
  readonly family: IPFamily;
  /** RTNH_F_ONLINK (4) when the route is `onlink`. */
  readonly flags: number;
}

/** RTNH_F_ONLINK: the gateway is on the link even though no address of ours covers it. */
export const routeFlagOnlink = 4;

/** Most lines parsed from one command's output: a guest with more is hostile or broken. */
export const maxParsedLines = 4096;

export const scopeByName: Readonly<Record<string, number>> = {
  global: 0,
  universe: 0,
  site: 200,
  link: 253,
  host: 254,
  nowhere: 255,
};

export function scopeName(scope: number): string {
  return Object.entries(scopeByName).find(([, v]) => v === scope)?.[0] ?? String(scope);
}

function lines(out: string): string[] {
  return out
    .split("\n")
    .slice(0, maxParsedLines)
    .map((l) => l.trim())
    .filter((l) => l !== "");
}

/**
 * `ip -o addr` ("4: eth0    inet 10.0.0.2/24 brd 10.0.0.255 scope global eth0\ ...") as addresses per
 * link name, in the order listed.
 */
export function parseAddrs(out: string): Map<string, GuestAddress[]> {
  const byLink = new Map<string, GuestAddress[]>();
  for (const line of lines(out)) {
    const t = line.split(/\s+/);
    const [index, rawName, kind, cidr] = t;
    if (index === undefined || !/^\d+:$/.test(index) || rawName === undefined || cidr === undefined) continue;
    if (kind !== "inet" && kind !== "inet6") continue;
    const name = rawName.split("@")[0] ?? rawName;
    const [address = "", mask = ""] = cidr.split("/");
    const family = kind === "inet" ? IPFamily.v4 : IPFamily.v6;
    if (isIP(address) !== (family === IPFamily.v4 ? 4 : 6) || !/^\d{1,3}$/.test(mask)) continue;
    const list = byLink.get(name) ?? [];
    list.push({ family, address, mask });
    byLink.set(name, list);
  }
  return byLink;
}

/** Route types `ip route` prints as a first word; none of them is a route the pod asked for. */
const routeTypes = new Set(["unicast", "local", "broadcast", "multicast", "anycast", "unreachable", "prohibit"]);
const routeTypesSkipped = new Set([...routeTypes].filter((t) => t !== "unicast").concat(["blackhole", "throw", "nat"]));

/**
 * `ip route` / `ip -6 route` output as routes of the main table. Non-unicast routes (multicast ff00::/8,
 * unreachable, ...) are left out: the kernel makes them, the pod does not ask for them.
 */
export function parseRoutes(out: string, family: IPFamily): GuestRoute[] {
  const routes: GuestRoute[] = [];
  for (const line of lines(out)) {
    const t = line.split(/\s+/);
    if (routeTypesSkipped.has(t[0] ?? "")) continue;
    if (t[0] === "unicast") t.shift();
    const dest = t.shift();
    if (dest === undefined) continue;
    let gateway = "";
    let device = "";
    let source = "";
    let scope = 0;
    let flags = 0;
    let table = "";
    for (let i = 0; i < t.length; i++) {
      const key = t[i];
      const val = t[i + 1] ?? "";
      switch (key) {
        case "via":
          gateway = val;
          i++;
          break;
        case "dev":
          device = val;
          i++;
          break;
        case "src":
          source = val;
          i++;
          break;
        case "scope":
          scope = scopeByName[val] ?? (/^\d+$/.test(val) ? Number(val) : 0);
          i++;
          break;
        case "table":
          table = val;
          i++;
          break;
        case "onlink":
          flags |= routeFlagOnlink;
          break;
        case "metric":
        case "proto":
        case "mtu":
        case "pref":
        case "expires":
          i++;
          break;
        case undefined:
        default:
          break;
      }
    }
    if (table !== "" && table !== "main") continue;
    if (dest !== "default" && !validPrefix(dest)) continue;
    routes.push({ dest, gateway, device, source, scope, family, flags });
  }
  return routes;
}

/** "a.b.c.d", "a.b.c.d/n" or the IPv6 equivalents, with n in range for the family. */
export function validPrefix(s: string): boolean {
  const [addr = "", len, ...rest] = s.split("/");
  if (rest.length > 0) return false;
  const v = isIP(addr);
  if (v === 0) return false;
  if (len === undefined) return true;
  return /^\d{1,3}$/.test(len) && Number(len) <= (v === 4 ? 32 : 128);
}
