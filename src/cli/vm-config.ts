// The VM a sandbox gets: configuration.toml (lookup order, drop-ins) with the sandbox container's
// allowed `io.katacontainers.config.*` annotations applied, and the guest image's tools disk when the
// configured initrd is the one `kata-ts image build` made. KATA_TS_IMAGE_DIR moves the default image
// location (tests and benchmarks use it); every other setting comes from the configuration.

import path from "node:path";
import { Code, KataError } from "../base/errors.js";
import { applyAnnotationsOrThrow } from "../config/annotations.js";
import { defaultConfig } from "../config/defaults.js";
import { loadConfig } from "../config/load.js";
import { kernelParams } from "../config/kernel-params.js";
import type { RuntimeConfig } from "../config/types.js";
import { toolsDiskSerial } from "../image/guest-init.js";
import { defaultImageDir, readGuestImage } from "../image/guest-image.js";
import type { Spec } from "../oci/spec.js";
import { defaultAgentDeadlines } from "../agent-client/deadlines.js";
import type { SandboxVmConfig } from "../sandbox/sandbox.js";
import { planVmSizing, workloadOf } from "../sandbox/vm-sizing.js";
import type { RuntimeContext } from "./runtime-context.js";

/** The image files, with the defaults moved to KATA_TS_IMAGE_DIR when it is set. */
function imageFiles(cfg: RuntimeConfig): { kernel: string; initrd: string } {
  const dir = process.env["KATA_TS_IMAGE_DIR"];
  const d = defaultConfig.hypervisor;
  const h = cfg.hypervisor;
  if (dir === undefined) return { kernel: h.kernel, initrd: h.initrd };
  return {
    kernel: h.kernel === d.kernel ? path.join(dir, path.basename(d.kernel)) : h.kernel,
    initrd: h.initrd === d.initrd ? path.join(dir, path.basename(d.initrd)) : h.initrd,
  };
}

/** `configPath` (containerd's runtime options) replaces the context's configuration lookup. */
export async function resolveVmConfig(ctx: RuntimeContext, spec: Spec, configPath?: string): Promise<SandboxVmConfig> {
  const loaded = configPath === undefined ? await ctx.config() : await loadConfig({ configPath });
  if (configPath !== undefined) {
    ctx.logger.info("configuration from the runtime options", { configPath });
    for (const w of loaded.warnings) ctx.logger.debug("configuration", { warning: w });
  }
  const cfg = applyAnnotationsOrThrow(loaded.config, spec.annotations ?? {}, {
    cpus: ctx.probe.cpuCount(),
    memoryMiB: ctx.probe.memTotalMiB(),
  });
  const h = cfg.hypervisor;
  if (h.image !== "") {
    throw new KataError(
      Code.Unimplemented,
      `${loaded.source}: [hypervisor.qemu] image: booting a root image is not supported yet (use initrd)`,
    );
  }
  if (cfg.runtime.internetworkingModel === "macvtap") {
    throw new KataError(
      Code.Unimplemented,
      `${loaded.source}: [runtime] internetworking_model = "macvtap" is not supported by kata-ts: use "tcfilter" (the default) or "none"`,
    );
  }
  const files = imageFiles(cfg);
  const imageDir = path.dirname(files.initrd);
  const image = await readGuestImage(imageDir);
  const ours = image !== undefined && image.initrdPath === files.initrd;
  if (!ours && files.initrd === imageFiles(defaultConfig).initrd) {
    const flag = imageDir === defaultImageDir ? "" : ` --output ${imageDir}`;
    throw new KataError(
      Code.NotFound,
      `no complete guest image (kernel, initrd and tools disk) in ${imageDir}: build it with: kata-ts image build${flag}`,
    );
  }
  if (ctx.probe.which(h.path) === undefined) {
    throw new KataError(
      Code.NotFound,
      `${h.path} is not installed (install the Debian package qemu-system-x86, or set [hypervisor.qemu] path)`,
    );
  }
  const workload = workloadOf(spec);
  const sizing = planVmSizing(
    { ...h, hostCpus: ctx.probe.cpuCount(), hostMemoryMiB: ctx.probe.memTotalMiB() },
    workload,
  );
  for (const w of sizing.warnings) ctx.logger.warn("vm sizing", { warning: w });
  ctx.logger.info("vm sized", {
    vcpus: sizing.vcpus,
    memoryMiB: sizing.memoryMiB,
    from: workload.source,
    ...(sizing.hotplug === undefined ? {} : { hotplug: sizing.hotplug }),
  });
  return {
    machineType: h.machineType,
    vcpus: sizing.vcpus,
    memoryMiB: sizing.memoryMiB,
    ...(sizing.hotplug === undefined ? {} : { hotplug: sizing.hotplug }),
    baseSize: { vcpus: h.defaultVcpus, memoryMiB: h.defaultMemoryMiB },
    ...(h.tcgTbSizeMiB === 0 ? {} : { tcgTbSizeMiB: h.tcgTbSizeMiB }),
    ...(h.reclaimGuestFreedMemory ? { reclaimGuestFreedMemory: true } : {}),
    kernelPath: files.kernel,
    initrdPath: files.initrd,
    readonlyDisks: ours ? [{ path: image.toolsDiskPath, serial: toolsDiskSerial }] : [],
    // panic=1 with -no-reboot: a guest that panics ends its VM instead of hanging; the user's
    // parameters come last so they win.
    kernelParams: ["panic=1", ...kernelParams(cfg, { debug: cfg.runtime.enableDebug })],
    bootTimeoutMs: cfg.agent.dialTimeoutMs,
    // "name param=value ..." (kernel_modules entries were checked when the configuration was read).
    kernelModules: cfg.agent.kernelModules.map((entry) => {
      const [name = "", ...parameters] = entry.trim().split(/\s+/);
      return { name, parameters };
    }),
    agentDeadlines: {
      requestMs: cfg.agent.requestTimeoutMs,
      createContainerMs: cfg.runtime.createContainerTimeoutMs,
      healthCheckMs: defaultAgentDeadlines.healthCheckMs,
    },
    msize9p: h.msize9p,
    binaryPath: h.path,
    network: { model: cfg.runtime.internetworkingModel, disableNewNetns: cfg.runtime.disableNewNetns },
    factory: {
      enableTemplate: cfg.factory.enableTemplate,
      templatePath: cfg.factory.templatePath,
      vmCacheNumber: cfg.factory.vmCacheNumber,
      vmCacheEndpoint: cfg.factory.vmCacheEndpoint,
    },
    // Kata: the agent's logs reach the runtime's log when debugging; the console log has them always.
    guestLogs: cfg.agent.enableDebug || cfg.runtime.enableDebug || ctx.flags.debug === true,
    disableGuestSeccomp: cfg.runtime.disableGuestSeccomp,
  };
}
