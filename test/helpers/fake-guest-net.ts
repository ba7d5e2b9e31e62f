// A guest's links, addresses, routes and ARP table in memory, driven by the subset of busybox `ip` and
// `arp` argv that src/guest/network.ts issues, with the kernel rules that make order matter: a gateway
// must be reachable (a link route or an address covers it) unless the route is onlink, renaming needs
// the link down, and taking a link down flushes its routes. For unit tests of GuestNetwork only.

import { isIP } from "node:net";
import { Code, KataError } from "../../src/base/errors.js";
import type { LinkAttr, NetCommand, NetPort, NetResult, NetTool } from "../../src/guest/network.js";

interface FakeLink {
  index: number;
  mac: string;
  mtu: number;
  up: boolean;
  addrs: { v6: boolean; cidr: string }[];
}

export interface FakeRoute {
  readonly v6: boolean;
  readonly dest: string;
  readonly gateway: string;
  readonly device: string;
  readonly source: string;
  readonly scope: string;
  readonly onlink: boolean;
}

function fail(cmd: string, why: string): KataError {
  return new KataError(Code.Internal, `/bin/${cmd}: exited 1: ${why}`);
}

function v4ToInt(a: string): number {
  return a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

/** Whether v4 prefix `cidr` ("10.0.0.0/24", or a bare address) covers v4 address `ip`. */
function covers(cidr: string, ip: string): boolean {
  const [net = "", len = "32"] = cidr.split("/");
  if (isIP(net) !== 4 || isIP(ip) !== 4) return false;
  const bits = Number(len);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (v4ToInt(net) & mask) >>> 0 === (v4ToInt(ip) & mask) >>> 0;
}

export class FakeGuestNet implements NetPort {
  readonly links = new Map<string, FakeLink>();
  routes: FakeRoute[] = [];
  readonly arp: string[] = [];
  readonly sysctls = new Map<string, string>();
  /** Every command, as "ip link set dev eth0 up". */
  readonly calls: string[] = [];
  /** How many times run() was called: each is one process in the guest. */
  batches = 0;
  delays = 0;
  /** Called before each delay: a test adds a NIC "still probing" here. */
  onDelay: (n: number) => void = () => undefined;
  #nextIndex = 1;

  addLink(name: string, mac: string, opts: { mtu?: number; up?: boolean; addrs?: string[] } = {}): void {
    this.links.set(name, {
      index: this.#nextIndex++,
      mac,
      mtu: opts.mtu ?? 1500,
      up: opts.up ?? false,
      addrs: (opts.addrs ?? []).map((cidr) => ({ v6: cidr.includes(":"), cidr })),
    });
  }

  #link(cmd: string, name: string): FakeLink {
    const l = this.links.get(name);
    if (l === undefined) throw fail(cmd, `can't find device '${name}'`);
    return l;
  }

  /** Runs the commands in order like the real port: the first failure that may not fail rejects. */
  run(commands: readonly NetCommand[]): Promise<NetResult[]> {
    this.batches++;
    return new Promise((resolve) => {
      const out: NetResult[] = [];
      for (const c of commands) {
        try {
          out.push({ stdout: this.runOne(c.tool, c.args) });
        } catch (e) {
          if (c.mayFail !== true) throw e;
          out.push({ stdout: "", failed: true });
        }
      }
      resolve(out);
    });
  }

  /** One command, outside any batch. */
  runOne(tool: NetTool, args: readonly string[]): string {
    const cmd = `${tool} ${args.join(" ")}`;
    this.calls.push(cmd);
    return tool === "arp" ? this.#arp(cmd, args) : this.#ip(cmd, args);
  }

  #arp(cmd: string, args: readonly string[]): string {
    const [i, dev = "", s, ip = "", mac = ""] = args;
    if (i !== "-i" || s !== "-s") throw fail(cmd, "usage");
    this.#link(cmd, dev);
    this.arp.push(`${ip} ${mac} ${dev}`);
    return "";
  }

  #ip(cmd: string, argv: readonly string[]): string {
    const v6 = argv[0] === "-6";
    const args = v6 ? argv.slice(1) : [...argv];
    const [obj, verb, ...rest] = args;
    if (obj === "-o" && verb === "addr") return this.#showAddrs(rest[0] === "show" ? rest[2] : undefined);
    if (obj === "route" && verb === undefined) return this.#showRoutes(v6);
    if (obj === "link" && verb === "set" && rest[0] === "dev") return this.#linkSet(cmd, rest.slice(1));
    if (obj === "addr" && verb === "flush" && rest[0] === "dev") {
      const l = this.#link(cmd, rest[1] ?? "");
      l.addrs = [];
      return "";
    }
    if (obj === "addr" && verb === "add" && rest[1] === "dev") {
      const l = this.#link(cmd, rest[2] ?? "");
      l.addrs.push({ v6: (rest[0] ?? "").includes(":"), cidr: rest[0] ?? "" });
      return "";
    }
    if (obj === "route" && (verb === "replace" || verb === "del")) return this.#route(cmd, v6, verb, rest);
    throw fail(cmd, "fake: unknown command");
  }

  #linkSet(cmd: string, rest: readonly string[]): string {
    let name = rest[0] ?? "";
    const l = this.#link(cmd, name);
    for (let i = 1; i < rest.length; i++) {
      const w = rest[i];
      if (w === "down") {
        l.up = false;
        this.routes = this.routes.filter((r) => r.device !== name);
      } else if (w === "up") {
        l.up = true;
      } else if (w === "name") {
        const to = rest[++i] ?? "";
        if (l.up) throw fail(cmd, "SIOCSIFNAME: Device or resource busy");
        if (this.links.has(to)) throw fail(cmd, "SIOCSIFNAME: File exists");
        this.links.delete(name);
        this.links.set(to, l);
        name = to;
      } else if (w === "mtu") {
        l.mtu = Number(rest[++i]);
      } else if (w === "address") {
        l.mac = rest[++i] ?? "";
      } else {
        throw fail(cmd, `fake: unknown link flag ${String(w)}`);
      }
    }
    return "";
  }

  #route(cmd: string, v6: boolean, verb: string, rest: readonly string[]): string {
    const [dest = ""] = rest;
    const kv = new Map<string, string>();
    let onlink = false;
    for (let i = 1; i < rest.length; i++) {
      const k = rest[i] ?? "";
      if (k === "onlink") onlink = true;
      else kv.set(k, rest[++i] ?? "");
    }
    const r: FakeRoute = {
      v6,
      dest,
      gateway: kv.get("via") ?? "",
      device: kv.get("dev") ?? "",
      source: kv.get("src") ?? "",
      scope: kv.get("scope") ?? "",
      onlink,
    };
    const same = (o: FakeRoute): boolean => o.v6 === v6 && o.dest === dest;
    if (verb === "del") {
      const before = this.routes.length;
      this.routes = this.routes.filter((o) => !(same(o) && o.gateway === r.gateway && o.device === r.device));
      if (this.routes.length === before) throw fail(cmd, "RTNETLINK answers: No such process");
      return "";
    }
    if (r.device !== "") this.#link(cmd, r.device);
    if (r.gateway !== "" && !onlink && !v6 && !this.#reachable(r.gateway)) {
      throw fail(cmd, "RTNETLINK answers: Network is unreachable");
    }
    this.routes = [...this.routes.filter((o) => !same(o)), r];
    return "";
  }

  #reachable(gw: string): boolean {
    const viaRoute = this.routes.some((o) => !o.v6 && o.gateway === "" && covers(o.dest, gw));
    const viaAddr = [...this.links.values()].some((l) => l.up && l.addrs.some((a) => !a.v6 && covers(a.cidr, gw)));
    return viaRoute || viaAddr;
  }

  #showAddrs(dev: string | undefined): string {
    const out: string[] = [];
    for (const [name, l] of this.links) {
      if (dev !== undefined && dev !== name) continue;
      for (const a of l.addrs) {
        out.push(
          `${l.index}: ${name}    ${a.v6 ? "inet6" : "inet"} ${a.cidr} scope global ${name}\\       valid_lft forever`,
        );
      }
    }
    return out.join("\n") + "\n";
  }

  #showRoutes(v6: boolean): string {
    const lines = this.routes
      .filter((r) => r.v6 === v6)
      .map((r) =>
        [
          r.dest,
          ...(r.gateway === "" ? [] : ["via", r.gateway]),
          ...(r.device === "" ? [] : ["dev", r.device]),
          ...(r.scope === "" ? [] : ["scope", r.scope]),
          ...(r.source === "" ? [] : ["src", r.source]),
          ...(r.onlink ? ["onlink"] : []),
        ].join(" "),
      );
    if (v6) lines.push("multicast ff00::/8 dev eth0  metric 256");
    return lines.join("\n") + "\n";
  }

  linkNames(): Promise<string[]> {
    return Promise.resolve([...this.links.keys()]);
  }

  linkAttr(name: string, attr: LinkAttr): Promise<string | undefined> {
    const l = this.links.get(name);
    if (l === undefined) return Promise.resolve(undefined);
    const flags = l.up ? "0x1003" : "0x1002";
    return Promise.resolve({ address: l.mac, mtu: String(l.mtu), flags }[attr]);
  }

  setSysctl(key: string, value: string): Promise<void> {
    this.sysctls.set(key, value);
    return Promise.resolve();
  }

  delay(): Promise<void> {
    this.onDelay(++this.delays);
    return Promise.resolve();
  }
}
