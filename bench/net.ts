// `npm run bench -- net`: host ↔ container networking over a CNI bridge, a kata-ts container (its VM joined
// to a pod netns: veth → tap by tc mirred → virtio-net) against a plain pod netns with no VM (the same
// bridge, veth and busybox, the floor). Per round and side: round-trip latency (the host pings the pod's
// address, 100 packets) and TCP throughput (busybox `nc` in the pod sends 64 MB to a Node server on the
// bridge's gateway address, timed by the server from accept to the last byte). Sides are interleaved.

import { spawn } from "node:child_process";
import { mkdir, open, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { delay } from "../src/base/async.js";
import { ignoreErrno, messageOf } from "../src/base/errors.js";
import { NodeProcessRunner, runChecked } from "../src/platform/process.js";
import { makeBusyboxBundle } from "../src/tools/busybox-bundle.js";
import { bridgeConflist, createPodNetns, removeBridgeNetwork, type PodNetns } from "../src/tools/cni-netns.js";
import { median } from "./boot.js";

export const transferBytes = 64 * 1024 * 1024;
export const pingCount = 100;
/** 20 ms between pings: under TCG a round trip can take a few ms, and ping must not queue up. */
const pingInterval = "0.02";

export interface PingStats {
  readonly sent: number;
  readonly received: number;
  readonly medianMs: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export interface NetSide {
  readonly ping: PingStats;
  readonly transferMs: number;
  readonly mbPerS: number;
}

export interface NetRound {
  readonly plain: NetSide;
  /** The VM side, or why it could not be measured. */
  readonly vm: NetSide | { readonly error: string };
  /** The host's 1-minute load average after the round: other work on the host slows the VM side most. */
  readonly load1?: number;
}

const runner = new NodeProcessRunner();

/** busybox ping's output: one `seq=N ttl=T time=X ms` line per reply, then its summary. */
export function parsePing(stdout: string): PingStats {
  const times = [...stdout.matchAll(/seq=\d+ ttl=\d+ time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  const sent = /(\d+) packets transmitted/.exec(stdout)?.[1];
  const sorted = [...times].sort((a, b) => a - b);
  return {
    sent: sent === undefined ? NaN : Number(sent),
    received: times.length,
    medianMs: median(times),
    p99Ms: sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)] ?? NaN,
    maxMs: sorted.at(-1) ?? NaN,
  };
}

async function pingFromHost(ip: string): Promise<PingStats> {
  const r = await runChecked(runner, "busybox", ["ping", "-c", String(pingCount), "-i", pingInterval, "-W", "5", ip]);
  return parsePing(r.stdout);
}

/** A TCP server on the bridge's gateway that times each connection until `transferBytes` arrived. */
class TransferSink {
  readonly #server = net.createServer();
  readonly #done: ((r: { ms: number } | Error) => void)[] = [];

  async listen(host: string): Promise<number> {
    this.#server.on("connection", (c) => {
      const t0 = performance.now();
      let n = 0;
      c.on("data", (b: Buffer) => {
        n += b.length;
        if (n < transferBytes) return;
        const ms = performance.now() - t0;
        c.destroy();
        this.#done.shift()?.({ ms });
      });
      c.on("error", () => c.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(0, host, resolve);
    });
    const addr = this.#server.address();
    if (addr === null || typeof addr === "string") throw new Error("transfer sink has no TCP port");
    return addr.port;
  }

  /** The next complete transfer; rejects when `abort` fires first (the sender gave up). */
  next(timeoutMs: number, abort?: Promise<Error>): Promise<{ ms: number }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        settle(new Error(`no ${transferBytes}-byte transfer in ${timeoutMs} ms`));
      }, timeoutMs);
      const settle = (r: { ms: number } | Error): void => {
        clearTimeout(timer);
        // Whichever comes first wins; a later transfer must not land on a settled wait.
        const at = this.#done.indexOf(settle);
        if (at >= 0) this.#done.splice(at, 1);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
      this.#done.push(settle);
      void abort?.then(settle);
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) =>
      this.#server.close(() => {
        resolve();
      }),
    );
  }
}

/** The sender's shell command, for busybox sh in the pod: retried while the pod's network comes up. */
export function senderScript(host: string, port: number): string {
  return (
    `i=0; until head -c ${transferBytes} /dev/zero | nc ${host} ${port}; do ` +
    `i=$((i+1)); [ $i -ge 100 ] && exit 1; sleep 0.2; done`
  );
}

function side(ping: PingStats, ms: number): NetSide {
  return { ping, transferMs: ms, mbPerS: transferBytes / 1e6 / (ms / 1000) };
}

async function plainOnce(pod: PodNetns, sink: TransferSink, port: number, gateway: string): Promise<NetSide> {
  const transfer = sink.next(60_000);
  const sender = runChecked(runner, "ip", [
    "netns",
    "exec",
    pod.name,
    "busybox",
    "sh",
    "-c",
    senderScript(gateway, port),
  ]);
  const { ms } = await transfer;
  await sender;
  return side(await pingFromHost(pod.ip), ms);
}

async function cli(cliPath: string, root: string, log: string, args: string[]): Promise<void> {
  // A created container holds its caller's stdio open until it exits (as with runc): give it a file.
  const fh = await open(log, "a");
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(cliPath, ["--root", root, ...args], { stdio: ["ignore", fh.fd, fh.fd] });
      child.once("error", reject);
      child.once("exit", resolve);
    });
    if (code !== 0) {
      const tail = (await readFile(log, "utf8")).trim().split("\n").slice(-3).join(" | ");
      throw new Error(`kata-ts ${args.join(" ")} exited ${String(code)}: ${tail}`);
    }
  } finally {
    await fh.close();
  }
}

/** Resolves with an error once the container stopped (its sender gave up: no network in the VM). */
async function stoppedWatch(cliPath: string, root: string, id: string, stop: AbortSignal): Promise<Error> {
  while (!stop.aborted) {
    await delay(1000);
    const r = await runner.run(cliPath, ["--root", root, "state", id]);
    if (r.code === 0 && /"status":\s*"stopped"/.test(r.stdout)) {
      return new Error("the container's sender gave up: the VM never reached the host (no NIC or no route?)");
    }
  }
  return new Error("stopped watching");
}

async function vmOnce(
  o: { cli: string; work: string; n: number },
  pod: PodNetns,
  sink: TransferSink,
  port: number,
  gateway: string,
): Promise<NetSide> {
  const root = path.join(o.work, "root");
  const id = `bench-net-${o.n}`;
  const log = path.join(o.work, `kata-ts-${o.n}.log`);
  const bundle = await makeBusyboxBundle(
    { runner },
    {
      dir: path.join(o.work, `bundle-${o.n}`),
      args: ["sh", "-c", `${senderScript(gateway, port)}; exec sleep 600`],
      edit: (spec) => {
        const others = (spec.linux?.namespaces ?? []).filter((ns) => ns.type !== "network");
        spec.linux = { ...spec.linux, namespaces: [...others, { type: "network", path: pod.nsPath }] };
      },
    },
  );
  const watch = new AbortController();
  try {
    const transfer = sink.next(600_000, stoppedWatch(o.cli, root, id, watch.signal));
    await cli(o.cli, root, log, ["create", "--bundle", bundle, id]);
    await cli(o.cli, root, log, ["start", id]);
    const { ms } = await transfer;
    return side(await pingFromHost(pod.ip), ms);
  } finally {
    watch.abort();
    await cli(o.cli, root, log, ["delete", "--force", id]).catch((e: unknown) => {
      process.stderr.write(`bench net: ${messageOf(e)}\n`);
    });
  }
}

export async function benchNet(opts: { runs: number; cli: string }): Promise<NetRound[]> {
  const work = path.join(tmpdir(), `kata-ts-bench-net-${process.pid}`);
  await mkdir(work, { recursive: true });
  const name = `kata-ts-bench-${process.pid}`;
  const bridge = `kbnet${process.pid}`.slice(0, 15);
  const third = process.pid % 256;
  const gateway = `10.199.${third}.1`;
  const network = bridgeConflist({ name, bridge, subnet: `10.199.${third}.0/24` });
  const pods: PodNetns[] = [];
  const sink = new TransferSink();
  try {
    const plainPod = await createPodNetns({ runner }, { network, name: `${name}-plain` });
    pods.push(plainPod);
    const port = await sink.listen(gateway);
    const rounds: NetRound[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const plain = await plainOnce(plainPod, sink, port, gateway);
      // A fresh pod per VM, as a kubelet makes one per sandbox; its DEL after `kata-ts delete` must work.
      const vmPod = await createPodNetns({ runner }, { network, name: `${name}-vm${i}` });
      let vm: NetRound["vm"];
      try {
        vm = await vmOnce({ cli: opts.cli, work, n: i }, vmPod, sink, port, gateway);
      } catch (e) {
        vm = { error: messageOf(e) };
      } finally {
        await vmPod.release();
      }
      const round = { plain, vm, load1: loadavg()[0] ?? NaN };
      rounds.push(round);
      process.stderr.write(`net round ${i + 1}/${opts.runs}: ${JSON.stringify(round)}\n`);
    }
    return rounds;
  } finally {
    await sink.close();
    for (const p of pods) await p.release();
    await removeBridgeNetwork({ runner }, { name, bridge });
    await rm(work, { recursive: true, force: true });
  }
}

export function renderNetReport(rounds: readonly NetRound[], env: { date: string; host: string }): string {
  const vms = rounds.flatMap((r) => ("error" in r.vm ? [] : [r.vm]));
  const errors = rounds.flatMap((r) => ("error" in r.vm ? [r.vm.error] : []));
  const med = (xs: readonly NetSide[], f: (s: NetSide) => number): number => median(xs.map(f));
  const plain = rounds.map((r) => r.plain);
  const ms = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(3)} ms` : "n/a");
  const mbs = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} MB/s` : "n/a");
  const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(1)}× slower` : "n/a");
  // Each row's cost ratio reads "the VM is N× worse": time over time, or throughput the other way round.
  const rows: [string, (s: NetSide) => number, (v: number) => string, "time" | "rate" | "count"][] = [
    ["ping round trip, median", (s) => s.ping.medianMs, ms, "time"],
    ["ping round trip, p99", (s) => s.ping.p99Ms, ms, "time"],
    [
      "ping replies received",
      (s) => s.ping.received,
      (v) => (Number.isFinite(v) ? `${v} of ${pingCount}` : "n/a"),
      "count",
    ],
    [
      `TCP ${transferBytes >> 20} MB, pod → host`,
      (s) => s.transferMs,
      (v) => (Number.isFinite(v) ? `${(v / 1000).toFixed(2)} s` : "n/a"),
      "time",
    ],
    ["TCP throughput", (s) => s.mbPerS, mbs, "rate"],
  ];
  const lines = [
    `Measured ${env.date} on ${env.host}, ${rounds.length} interleaved rounds (a plain pod netns, then a kata-ts ` +
      `container in a fresh pod netns on the same CNI bridge), medians; ${vms.length} of ${rounds.length} VM rounds measured.`,
    "",
    "| measure | plain netns (no VM) | kata-ts VM (tcfilter) | VM cost |",
    "|---|---|---|---|",
    ...rows.map(([k, f, fmt, kind]) => {
      const p = med(plain, f);
      const v = vms.length === 0 ? NaN : med(vms, f);
      const cost = kind === "time" ? ratio(v, p) : kind === "rate" ? ratio(p, v) : "";
      return `| ${k} | ${fmt(p)} | ${fmt(v)} | ${cost} |`;
    }),
  ];
  const loads = rounds.flatMap((r) => (r.load1 === undefined ? [] : [r.load1]));
  if (loads.length > 0) {
    lines.push(
      "",
      `Host load average (1 min) after each round: ${loads.map((l) => l.toFixed(1)).join(", ")} on ` +
        `${availableParallelism()} CPUs: under TCG the VM side needs a whole CPU, so a busy host slows it most.`,
    );
  }
  if (errors.length > 0) lines.push("", `VM side not measured: ${[...new Set(errors)].join("; ")}`);
  return lines.join("\n");
}

export async function writeNetResults(
  rounds: readonly NetRound[],
  docPath: string,
  rawDir: string,
  host: string,
): Promise<string> {
  const date = new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC";
  await mkdir(rawDir, { recursive: true });
  await writeFile(path.join(rawDir, `net-${Date.now()}.json`), JSON.stringify({ date, host, rounds }, null, 2));
  const section = renderNetReport(rounds, { date, host });
  const doc = (await readFile(docPath, "utf8").catch(ignoreErrno("ENOENT"))) ?? "# Benchmarks\n";
  const begin = "<!-- bench:net:begin -->";
  const end = "<!-- bench:net:end -->";
  const block = `${begin}\n${section}\n${end}`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  const next =
    i >= 0 && j > i
      ? doc.slice(0, i) + block + doc.slice(j + end.length)
      : `${doc.trimEnd()}\n\n## Network\n\n${block}\n`;
  await writeFile(docPath, next);
  return section;
}
