// One real-VM integration test's own world: a private --root, a work directory with a small
// configuration.toml and busybox bundles, the CLI run against them, and what the saved state and /proc
// say about a sandbox's processes.

import assert from "node:assert/strict";
import { mkdir, open, readdir, readFile, readlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { delay } from "../../src/base/async.js";
import { ignoreErrno } from "../../src/base/errors.js";
import type { Spec } from "../../src/oci/spec.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { makeRunRoot, runCli, runCliToFiles, type CliResult } from "./cli.js";
import { testImageDir } from "./requires.js";

export const vmEnv = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
/** A CLI call that may boot a VM: TCG on a loaded 2-core host takes 5-25 s per boot. */
export const vmTimeoutMs = 240_000;

const runner = new NodeProcessRunner();

export interface VmWorld {
  readonly root: string;
  readonly dir: string;
  readonly config: string;
  /** The CLI with stdout and stderr to files: a created container holds its caller's stdio. */
  cli(args: readonly string[], timeoutMs?: number): Promise<CliResult>;
  /** The CLI with piped stdio, for verbs that hold no container's stdio (state, list, exec, wait). */
  piped(args: readonly string[], timeoutMs?: number): Promise<CliResult>;
  /** `create`, with the container's stdout and stderr in `<dir>/<id>.out` (returned as `out`). */
  create(id: string, bundle: string): Promise<CliResult & { out: string }>;
  /** A busybox bundle in `<dir>/<name>` running `args`. */
  bundle(name: string, args: string[], edit?: (s: Spec) => void): Promise<string>;
}

/** A world under `parent/name`; its --root is `root` when given (a tmpfs, say), else a new private one. */
export async function makeWorld(
  parent: string,
  name: string,
  opts: { toml?: string; root?: string } = {},
): Promise<VmWorld> {
  const root = opts.root ?? (await makeRunRoot());
  const dir = path.join(parent, name);
  await mkdir(dir, { recursive: true });
  const config = path.join(dir, "configuration.toml");
  await writeFile(config, opts.toml ?? "");
  const global = ["--root", root, "--config", config, "--log", path.join(dir, "kata.log")];
  return {
    root,
    dir,
    config,
    cli: (args, timeoutMs = vmTimeoutMs) => runCliToFiles([...global, ...args], dir, { env: vmEnv, timeoutMs }),
    piped: (args, timeoutMs = vmTimeoutMs) => runCli([...global, ...args], { env: vmEnv, timeoutMs }),
    async create(id, bundle) {
      const out = path.join(dir, `${id}.out`);
      const fh = await open(out, "a");
      const errFile = `${out}.cli-err`;
      const efh = await open(errFile, "a");
      try {
        const r = await runCli([...global, "create", "--bundle", bundle, id], {
          env: vmEnv,
          timeoutMs: vmTimeoutMs,
          stdoutFd: fh.fd,
          stderrFd: efh.fd,
        });
        return { ...r, stderr: await readFile(errFile, "utf8"), out };
      } finally {
        await fh.close();
        await efh.close();
      }
    },
    bundle: (bundleName, args, edit) =>
      makeBusyboxBundle({ runner }, { dir: path.join(dir, bundleName), args, ...(edit === undefined ? {} : { edit }) }),
  };
}

/** containerd's CRI annotations for a pod's sandbox or app container. */
export function cri(type: "sandbox" | "container", sandboxId: string): Record<string, string> {
  return { "io.kubernetes.cri.container-type": type, "io.kubernetes.cri.sandbox-id": sandboxId };
}

/** The service's and QEMU's pids as the sandbox's state.json records them. */
export async function savedPids(root: string, sandboxId: string): Promise<{ servicePid: number; vmPid: number }> {
  const state: unknown = JSON.parse(await readFile(path.join(root, "sbs", sandboxId, "state.json"), "utf8"));
  assert.ok(
    typeof state === "object" &&
      state !== null &&
      "servicePid" in state &&
      typeof state.servicePid === "number" &&
      "vmPid" in state &&
      typeof state.vmPid === "number",
    "state.json records the service's and QEMU's pids",
  );
  return { servicePid: state.servicePid, vmPid: state.vmPid };
}

/** Open file descriptors of a process, as /proc shows them ("<fd> -> <target>"). */
export async function openFds(pid: number): Promise<string[]> {
  const dir = `/proc/${pid}/fd`;
  const out: string[] = [];
  for (const fd of await readdir(dir)) {
    // An fd closed between readdir and readlink is simply not open any more.
    const link = await readlink(`${dir}/${fd}`).catch(ignoreErrno("ENOENT"));
    if (link !== undefined) out.push(`${fd} -> ${link}`);
  }
  return out;
}

/** VmRSS of a process, in KiB. */
export async function rssKiB(pid: number): Promise<number> {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, "utf8"));
  assert.ok(m?.[1] !== undefined, `no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** Pids of processes whose command line contains `marker` (a hook's unique argument, say). */
export async function processesWith(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const text = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(ignoreErrno("ENOENT", "ESRCH"));
    if (text?.split("\0").includes(marker) === true) found.push(Number(entry));
  }
  return found;
}

/** Polls `check` (every 200 ms) until it holds or `ms` pass; whether it held. */
export async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await delay(200);
  }
  return check();
}
