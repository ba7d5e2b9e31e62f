// What every CLI command shares: global flags, the logger, the real ports. Built once per process in
// kata-ts-main.ts (the composition root).

import { appendFileSync } from "node:fs";
import path from "node:path";
import { defaultRunDir, installRoot } from "./paths.js";
import { JsonLogger, nullLogger, type Logger } from "../base/log.js";
import { QemuHypervisor } from "../hypervisor/qemu/qemu.js";
import { CommandMounter } from "../platform/mount.js";
import { HelperShareBinder } from "../platform/share-binder.js";
import { launcherRelPath } from "../platform/launcher.js";
import { NodeProcessRunner, type ProcessRunner } from "../platform/process.js";
import { RealHostProbe, type HostProbe } from "../platform/probe.js";
import type { SandboxDeps } from "../sandbox/sandbox.js";
import type { TemplateDeps } from "../factory/template.js";
import { TemplateVmFactory } from "../factory/vm-factory.js";
import { CacheVmSource } from "../factory/cache-client.js";
import { loadConfig, type LoadedConfig } from "../config/load.js";
import { readSelfMountInfo } from "../storage/shared-dir.js";
import { NetnsManager } from "../network/netns.js";

export interface GlobalFlags {
  readonly root: string;
  /** configuration.toml to use instead of the search path. */
  readonly config?: string;
  readonly log?: string;
  readonly logFormat: "text" | "json";
  readonly debug?: boolean;
}

export { defaultRunDir, installRoot };

/** native/kata-ts-exec as `npm run build` installs it: every child of the host side starts through it. */
export const launcherPath = path.join(installRoot, launcherRelPath);
/** native/kata-ts-vmguard: the VM cache's QEMU guard (src/platform/vm-guard.ts). */
const vmGuardPath = path.join(installRoot, "dist", "native", "kata-ts-vmguard");

export interface RuntimeContext {
  readonly flags: GlobalFlags;
  readonly logger: Logger;
  readonly runner: ProcessRunner;
  readonly probe: HostProbe;
  sandboxDeps(): SandboxDeps;
  /** What the VM template (src/factory) needs: `kata-ts factory`, and sandboxes that start from it. */
  templateDeps(): TemplateDeps;
  /** configuration.toml (lookup order, drop-ins), loaded once; warnings are logged. */
  config(): Promise<LoadedConfig>;
}

export interface ContextOptions {
  /** Told each configuration warning once, when the configuration is first loaded (the CLI: stderr). */
  readonly onConfigWarning?: (warning: string) => void;
  /**
   * Also receives every log line (the service under containerd: its `log` fifo); it must not throw or
   * block.
   */
  readonly logTee?: (line: string) => void;
}

export function makeContext(flags: GlobalFlags, opts: ContextOptions = {}): RuntimeContext {
  // Logs go to --log only: `run` prints nothing of its own on success, and there is no syslog here.
  const { logTee } = opts;
  const logger =
    flags.log === undefined && logTee === undefined
      ? nullLogger
      : new JsonLogger(
          (line) => {
            logTee?.(line);
            if (flags.log !== undefined) appendFileSync(flags.log, line);
          },
          { level: flags.debug === true ? "debug" : "info", format: flags.logFormat },
        );
  const runner = new NodeProcessRunner({ launcher: launcherPath });
  const probe = new RealHostProbe(process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin");
  let loaded: Promise<LoadedConfig> | undefined;
  const templateDeps = (): TemplateDeps => ({
    hypervisor: new QemuHypervisor(
      { runner, probe, logger },
      {
        binary: "qemu-system-x86_64",
        confine: path.join(installRoot, "dist", "native", "kata-ts-confine"),
        vmGuard: vmGuardPath,
      },
    ),
    accel: () => (probe.kvmUsable() ? "kvm" : "tcg"),
    mounter: new CommandMounter(runner),
    readMountInfo: readSelfMountInfo,
    logger,
    netns: new NetnsManager({ runner }),
  });
  return {
    flags,
    logger,
    runner,
    probe,
    config() {
      loaded ??= loadConfig(flags.config === undefined ? {} : { configPath: flags.config }).then(async (l) => {
        for (const w of l.warnings) {
          logger.warn("configuration", { warning: w });
          opts.onConfigWarning?.(w);
        }
        if (l.config.runtime.enableTracing && l.config.runtime.tracingExporter.kind === "file") {
          // OpenTelemetry is loaded only when tracing is on: it is most of a short verb's modules.
          const { installFileTracing } = await import("../platform/tracing.js");
          installFileTracing(l.config.runtime.tracingExporter.path);
        }
        return l;
      });
      return loaded;
    },
    sandboxDeps() {
      const t = templateDeps();
      return {
        hypervisor: t.hypervisor,
        mounter: t.mounter,
        binder: new HelperShareBinder(runner, path.join(installRoot, "dist", "native", "kata-ts-mount")),
        readMountInfo: readSelfMountInfo,
        logger,
        now: () => performance.now(),
        factory: new TemplateVmFactory(t, new CacheVmSource({ ...t, runner, vmGuard: vmGuardPath })),
      };
    },
    templateDeps,
  };
}
