// Composition root of the guest agent, started by busybox init. The only place in the guest where real
// ports are built. Bundled twice (src/image/bundle-agent.ts): as ESM (/opt/kata-ts/kata-ts-agent.mjs)
// and as CommonJS, from which the image builder makes a V8 startup snapshot (/opt/kata-ts/agent.blob)
// that skips loading and compiling the bundle at every boot. So: no top-level await (CommonJS has
// none), and nothing may open a handle before main() runs (a snapshot cannot hold one).

import { access, readFile, realpath, writeFile } from "node:fs/promises";
import v8 from "node:v8";
import { JsonLogger, errField } from "../base/log.js";
import { Code, KataError, describeError, ignoreErrno } from "../base/errors.js";
import { CommandMounter } from "../platform/mount.js";
import { NodeProcessRunner, describeExit, runChecked, type ProcessRunner } from "../platform/process.js";
import { agentPortName, guestPsColumns } from "../protocol/guest-paths.js";
import { TtrpcServer } from "../protocol/ttrpc/server.js";
import { Agent } from "../guest/agent.js";
import { catchesSignal } from "../guest/guest-process.js";
import { Crun } from "../guest/crun.js";
import { isOnReadOnlyMount, planCrunLauncher } from "../guest/crun-launcher.js";
import { agentLogLevel } from "../guest/log-level.js";
import { servePort } from "../guest/serve-port.js";
import { OomEvents } from "../guest/oom.js";
import { onlineCpuMem } from "../guest/hotplug.js";
import { GuestNetwork } from "../guest/network.js";
import { BusyboxNetPort } from "../guest/network-port.js";
import { ClockSeedHelper } from "../guest/clock-seed-helper.js";
import { registerAgentService } from "../guest/service.js";
import { StorageManager, guestStorageHandlers } from "../guest/storage.js";

async function imageVersion(): Promise<string> {
  try {
    const meta: unknown = JSON.parse(await readFile("/etc/kata-ts-image.json", "utf8"));
    if (typeof meta === "object" && meta !== null && "inputsHash" in meta && typeof meta.inputsHash === "string") {
      return `kata-ts-agent image ${meta.inputsHash.slice(0, 12)}`;
    }
  } catch {
    return "kata-ts-agent (no image metadata)";
  }
  return "kata-ts-agent";
}

/** The guest has no modprobe: /init insmods from /lib/modules/<name>.ko, and so does this. */
async function loadKernelModule(runner: NodeProcessRunner, name: string, parameters: readonly string[]): Promise<void> {
  const file = `/lib/modules/${name}.ko`;
  try {
    await access(file);
  } catch (e) {
    throw new KataError(Code.NotFound, `kernel module ${name} is not in the guest image (${file})`, { cause: e });
  }
  // Loaded already (by /init, or an earlier sandbox of this VM) is what was asked; the kernel names
  // modules with underscores in /sys/module.
  const loaded = await access(`/sys/module/${name.replaceAll("-", "_")}`).then(() => true, ignoreErrno("ENOENT"));
  if (loaded === true) return;
  const r = await runner.run("insmod", [file, ...parameters]);
  if (r.code !== 0) throw new KataError(Code.FailedPrecondition, `insmod ${name}: ${r.stderr.trim()}`);
}

const crunBinary = "/usr/bin/crun";
/** Runs crun from a sealed copy (native/kata-ts-sealed-exec.c); the image layout's guestPaths.sealedExec. */
const sealedExec = "/usr/bin/kata-ts-sealed-exec";

/** The sealed launcher and the verbs it runs, as planCrunLauncher decides from crun's mount and the image. */
async function crunLauncher(logger: JsonLogger): Promise<{ launcher?: string; launcherVerbs?: ReadonlySet<"exec"> }> {
  // Unknown (undefined) when either cannot be read: then the launcher runs every verb, as before.
  const readOnly = await Promise.all([readFile("/proc/self/mountinfo", "utf8"), realpath(crunBinary)]).then(
    ([mountinfo, file]) => isOnReadOnlyMount(mountinfo, file),
    (e: unknown) => {
      logger.warn("cannot tell whether crun is on a read-only mount", { err: errField(e) });
      return undefined;
    },
  );
  const inImage = await access(sealedExec).then(() => true, ignoreErrno("ENOENT"));
  const plan = planCrunLauncher(readOnly, inImage === true);
  if (plan.warning !== undefined) logger.warn(plan.warning);
  if (!plan.viaLauncher) return {};
  return plan.verbs === undefined ? { launcher: sealedExec } : { launcher: sealedExec, launcherVerbs: plan.verbs };
}

/** native/kata-ts-reseed.c, served long-lived (guest/clock-seed-helper.ts); absent: no ReseedRandomDev. */
const guestReseedHelper = "/usr/bin/kata-ts-reseed";

async function main(startedFrom: "snapshot" | "bundle"): Promise<void> {
  const cmdline = (await readFile("/proc/cmdline", "utf8").catch(ignoreErrno("ENOENT"))) ?? "";
  const logger = new JsonLogger((line) => process.stderr.write(line), {
    level: agentLogLevel(cmdline, process.env["KATA_TS_AGENT_LOG"]),
    fields: { source: "agent" },
  });
  process.on("uncaughtException", (e) => {
    logger.error("uncaught exception: exiting (init restarts the agent)", { err: describeError(e) });
    process.exit(1);
  });
  process.on("unhandledRejection", (e) => {
    logger.error("unhandled rejection", { err: describeError(e) });
  });
  const runner = new NodeProcessRunner();
  const mounter = new CommandMounter(runner);
  const agent = new Agent({
    crun: new Crun(runner, {
      binary: crunBinary,
      stateDir: "/run/crun",
      ttyHelper: "/usr/bin/kata-ts-tty",
      ...(await crunLauncher(logger)),
    }),
    storage: new StorageManager({ mounter, logger }, guestStorageHandlers),
    logger,
    setHostname: (name) => writeFile("/proc/sys/kernel/hostname", name),
    loadKernelModule: (name, parameters) => loadKernelModule(runner, name, parameters),
    oom: new OomEvents(logger),
    catchesSignal,
  });
  // The serial port has no connection boundaries the agent can always see: a host that reconnects
  // quickly starts its stream ids at 1 on what looks like the same connection.
  const server = new TtrpcServer({ logger, newClientOnStreamOne: true });
  const reseedHelper = await access(guestReseedHelper).then(
    () => new ClockSeedHelper(guestReseedHelper),
    ignoreErrno("ENOENT"),
  );
  registerAgentService(server, agent, await imageVersion(), {
    runPs: (args) => runGuestPs(runner, args),
    // One long-lived helper for both (guest/clock-seed-helper.ts): a clone's first calls fork no process.
    setTime: async (sec, usec) => {
      if (reseedHelper !== undefined) return reseedHelper.setTime(sec, usec);
      await runChecked(runner, "date", ["-s", `@${sec.toString()}`]);
    },
    ...(reseedHelper === undefined ? {} : { reseed: (seed: Uint8Array) => reseedHelper.reseed(seed) }),
    onlineCpuMem: (req, signal) => onlineCpuMem(req, signal, { logger: logger.child({ subsystem: "hotplug" }) }),
    network: new GuestNetwork(new BusyboxNetPort(runner), logger.child({ subsystem: "network" })),
  });
  const stop = new AbortController();
  process.on("SIGTERM", () => {
    stop.abort();
  });
  // The "serving" line says how the agent started: the boot benchmark reads it.
  const jitless = process.execArgv.includes("--jitless");
  await servePort(server, agentPortName, logger.child({ startedFrom, jitless }), stop.signal);
}

function run(startedFrom: "snapshot" | "bundle"): void {
  main(startedFrom).catch((e: unknown) => {
    process.stderr.write(`kata-ts agent: ${describeError(e)}\n`);
    process.exit(1);
  });
}

// Building the snapshot runs this file up to here (every module loaded, nothing started); the guest's
// `node --snapshot-blob` then starts at run().
if (v8.startupSnapshot.isBuildingSnapshot()) {
  v8.startupSnapshot.setDeserializeMainFunction(() => {
    run("snapshot");
  });
} else {
  run("bundle");
}

/** busybox ps, exec'd directly; a ps that refuses the user's options says why (its stderr) to the caller. */
async function runGuestPs(runner: ProcessRunner, args: readonly string[]): Promise<string> {
  const argv = args.length === 0 ? ["-o", guestPsColumns] : args;
  const r = await runner.run("ps", argv, {});
  if (r.code !== 0) {
    const err = r.stderr
      .split("\n")
      .filter((l) => l.trim() !== "")
      .slice(0, 2)
      .join(" | ")
      .slice(0, 1024);
    throw new KataError(
      Code.InvalidArgument,
      `ps ${argv.join(" ")}: ${describeExit(r)}${err === "" ? "" : `: ${err}`}`,
    );
  }
  return r.stdout;
}
