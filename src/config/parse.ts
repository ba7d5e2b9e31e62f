// Turns a merged configuration.toml document into a RuntimeConfig: every key type-checked and
// range-checked, every problem collected (none stops the others), Kata-only and unknown keys turned into
// warnings. Pure: load.ts does the file reading and merging.

import {
  defaultConfig,
  maxBridges,
  maxMsize9p,
  maxTcgTbSizeMiB,
  maxTimeoutMs,
  maxVcpus,
  minMemoryMiB,
  minMsize9p,
} from "./defaults.js";
import {
  kata1Sections,
  kataOnlyAgentKeys,
  kataOnlyHypervisorKeys,
  kataOnlyRuntimeKeys,
  kataOtherHypervisors,
} from "./kata-keys.js";
import { isTable, type Merged, type TomlTable } from "./merge.js";
import { globProblem, regexProblem, SectionReader, type ReadContext } from "./section-reader.js";
import {
  blockDeviceDrivers,
  internetworkingModels,
  machineTypes,
  sharedFsTypes,
  type AgentConfig,
  type ConfigIssue,
  type FactoryConfig,
  type HypervisorConfig,
  type RuntimeConfig,
  type RuntimeSection,
  type TracingExporter,
} from "./types.js";

export type ParsedConfig =
  | { readonly ok: true; readonly config: RuntimeConfig; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly issues: readonly ConfigIssue[]; readonly warnings: readonly string[] };

function hypervisor(r: SectionReader, d: HypervisorConfig): HypervisorConfig {
  // A file that names either boot medium means exactly that one: the default initrd must not linger.
  const named = r.has("initrd") || r.has("image");
  const h: HypervisorConfig = {
    path: r.absPath("path", d.path),
    kernel: r.absPath("kernel", d.kernel),
    initrd: r.absPath("initrd", named ? "" : d.initrd, { allowEmpty: true }),
    image: r.absPath("image", named ? "" : d.image, { allowEmpty: true }),
    machineType: r.oneOf("machine_type", machineTypes, d.machineType, {
      pc: "never",
      virt: "never",
      pseries: "never",
      "s390-ccw-virtio": "never",
    }),
    kernelParams: splitKernelParams(r.string("kernel_params", d.kernelParams.join(" "))),
    firmware: r.absPath("firmware", d.firmware, { allowEmpty: true }),
    defaultVcpus: r.int("default_vcpus", d.defaultVcpus, 1, maxVcpus),
    defaultMaxVcpus: r.int("default_maxvcpus", d.defaultMaxVcpus, 0, maxVcpus),
    defaultMemoryMiB: r.int("default_memory", d.defaultMemoryMiB, minMemoryMiB),
    defaultMaxMemoryMiB: r.int("default_maxmemory", d.defaultMaxMemoryMiB, 0),
    memorySlots: r.int("memory_slots", d.memorySlots, 0),
    defaultBridges: r.int("default_bridges", d.defaultBridges, 0, maxBridges),
    blockDeviceDriver: r.oneOf("block_device_driver", blockDeviceDrivers, d.blockDeviceDriver),
    sharedFs: r.oneOf("shared_fs", sharedFsTypes, d.sharedFs, {
      "virtio-fs": "yet",
      "virtio-fs-nydus": "yet",
      none: "never",
    }),
    msize9p: r.int("msize_9p", d.msize9p, minMsize9p, maxMsize9p),
    reclaimGuestFreedMemory: r.bool("reclaim_guest_freed_memory", d.reclaimGuestFreedMemory),
    tcgTbSizeMiB: r.int("tcg_tb_size", d.tcgTbSizeMiB, 0, maxTcgTbSizeMiB),
    enableDebug: r.bool("enable_debug", d.enableDebug),
    disableNestingChecks: r.bool("disable_nesting_checks", d.disableNestingChecks),
    enableAnnotations: r.strings("enable_annotations", d.enableAnnotations, regexProblem),
    validHypervisorPaths: r.strings("valid_hypervisor_paths", d.validHypervisorPaths, globProblem),
    validKernelPaths: r.strings("valid_kernel_paths", d.validKernelPaths, globProblem),
    validInitrdPaths: r.strings("valid_initrd_paths", d.validInitrdPaths, globProblem),
    validImagePaths: r.strings("valid_image_paths", d.validImagePaths, globProblem),
  };
  if (r.ok("initrd") && r.ok("image")) {
    if (h.initrd !== "" && h.image !== "") {
      r.issue("image", "cannot be set together with initrd: a VM boots from an initrd or an image, not both");
    } else if (h.initrd === "" && h.image === "") r.issue("initrd", "one of initrd or image must be set");
  }
  if (r.ok("default_vcpus") && r.ok("default_maxvcpus") && h.defaultMaxVcpus !== 0) {
    if (h.defaultMaxVcpus < h.defaultVcpus)
      r.issue("default_maxvcpus", `must be 0 or >= default_vcpus (${h.defaultVcpus})`);
  }
  if (r.ok("default_memory") && r.ok("default_maxmemory") && h.defaultMaxMemoryMiB !== 0) {
    if (h.defaultMaxMemoryMiB < h.defaultMemoryMiB)
      r.issue("default_maxmemory", `must be 0 or >= default_memory (${h.defaultMemoryMiB})`);
  }
  r.leftovers(kataOnlyHypervisorKeys);
  return h;
}

/** Kata splits kernel_params on white space (strings.Fields); so do we. */
export function splitKernelParams(s: string): string[] {
  return s.split(/\s+/).filter((p) => p !== "");
}

/** A kernel_modules entry is "name param=value ..." (modprobe(8) arguments). */
export function kernelModuleProblem(s: string): string | undefined {
  const name = s.trim().split(/\s+/)[0] ?? "";
  return /^[A-Za-z0-9_-]+$/.test(name) ? undefined : `must start with a module name, not ${JSON.stringify(s)}`;
}

function agent(r: SectionReader, d: AgentConfig): AgentConfig {
  const a: AgentConfig = {
    enableDebug: r.bool("enable_debug", d.enableDebug),
    enableTracing: r.bool("enable_tracing", d.enableTracing),
    kernelModules: r.strings("kernel_modules", d.kernelModules, kernelModuleProblem),
    debugConsoleEnabled: r.bool("debug_console_enabled", d.debugConsoleEnabled),
    dialTimeoutMs: r.int("dial_timeout", d.dialTimeoutMs / 1000, 1, maxTimeoutMs / 1000) * 1000,
    requestTimeoutMs: r.int("request_timeout_ms", d.requestTimeoutMs, 100, maxTimeoutMs),
  };
  r.leftovers(kataOnlyAgentKeys);
  return a;
}

function tracingExporter(r: SectionReader, d: TracingExporter): TracingExporter {
  const key = "tracing_exporter";
  const v = r.string(key, "");
  if (!r.has(key) || !r.ok(key)) return d;
  if (v === "none") return { kind: "none" };
  const file = v.startsWith("file:") ? v.slice("file:".length) : "";
  if (file.startsWith("/")) return { kind: "file", path: file };
  r.issue(key, `must be "none" or "file:<absolute path>", not ${JSON.stringify(v)}`);
  return d;
}

function runtime(r: SectionReader, d: RuntimeSection): RuntimeSection {
  let rt: RuntimeSection = {
    enableDebug: r.bool("enable_debug", d.enableDebug),
    enableTracing: r.bool("enable_tracing", d.enableTracing),
    tracingExporter: tracingExporter(r, d.tracingExporter),
    internetworkingModel: r.oneOf("internetworking_model", internetworkingModels, d.internetworkingModel),
    disableNewNetns: r.bool("disable_new_netns", d.disableNewNetns),
    sandboxCgroupOnly: r.bool("sandbox_cgroup_only", d.sandboxCgroupOnly),
    disableGuestSeccomp: r.bool("disable_guest_seccomp", d.disableGuestSeccomp),
    // Kata refuses features it does not know; kata-ts has none yet.
    experimental: r.strings(
      "experimental",
      d.experimental,
      (f) => `unsupported experimental feature ${JSON.stringify(f)}`,
    ),
    enablePprof: r.bool("enable_pprof", d.enablePprof),
    createContainerTimeoutMs:
      r.int("create_container_timeout", d.createContainerTimeoutMs / 1000, 1, maxTimeoutMs / 1000) * 1000,
  };
  // Kata's legacy mode (only the vCPU threads in the pod's cgroup, the rest unconstrained) is not
  // implemented: the sandbox's processes always join its cgroup (docs/configuration.md).
  if (r.has("sandbox_cgroup_only") && !rt.sandboxCgroupOnly) {
    r.warn(
      "sandbox_cgroup_only",
      "false is not implemented: taken as true (the VM and its service join the sandbox's cgroup)",
    );
    rt = { ...rt, sandboxCgroupOnly: true };
  }
  // Kata checkNetNsConfig: without a netns of its own, only "none" leaves the host's interfaces alone.
  if (rt.disableNewNetns && rt.internetworkingModel !== "none" && r.ok("internetworking_model")) {
    r.issue("disable_new_netns", 'only works with internetworking_model = "none"');
  }
  r.leftovers(kataOnlyRuntimeKeys);
  return rt;
}

function factory(r: SectionReader, d: FactoryConfig, h: HypervisorConfig): FactoryConfig {
  const f: FactoryConfig = {
    enableTemplate: r.bool("enable_template", d.enableTemplate),
    templatePath: r.absPath("template_path", d.templatePath),
    vmCacheNumber: r.int("vm_cache_number", d.vmCacheNumber, 0),
    vmCacheEndpoint: r.absPath("vm_cache_endpoint", d.vmCacheEndpoint),
  };
  // Kata checkFactoryConfig (1.x): a template clones guest RAM, which an image-booted guest does not hold whole.
  if (f.enableTemplate && h.image !== "") r.issue("enable_template", "requires an initrd (image is set)");
  r.leftovers(new Set());
  return f;
}

/**
 * From a component's tables (`[hypervisor.<type>]`, `[agent.<type>]`), the one kata-ts supports, or an
 * empty table; any other type is an issue (Kata also refuses unknown hypervisor types).
 */
function pick(
  doc: TomlTable,
  component: string,
  supported: string,
  others: ReadonlySet<string>,
  ctx: ReadContext,
): TomlTable {
  const v = doc[component];
  if (v === undefined) return {};
  if (!isTable(v)) {
    ctx.issues.push({ file: ctx.originOf([component]), path: `[${component}]`, message: "must be a table" });
    return {};
  }
  let chosen: TomlTable = {};
  for (const [name, t] of Object.entries(v)) {
    const path = `[${component}.${name}]`;
    const file = ctx.originOf([component, name]);
    if (name === supported && isTable(t)) chosen = t;
    else if (name === supported) ctx.issues.push({ file, path, message: "must be a table" });
    else {
      const why = others.has(name) ? "" : `unknown ${component}: `;
      ctx.issues.push({ file, path, message: `${why}kata-ts supports only [${component}.${supported}]` });
    }
  }
  return chosen;
}

function table(doc: TomlTable, name: string, ctx: ReadContext): TomlTable {
  const v = doc[name];
  if (v === undefined) return {};
  if (isTable(v)) return v;
  ctx.issues.push({ file: ctx.originOf([name]), path: `[${name}]`, message: "must be a table" });
  return {};
}

/** Warnings for top-level keys that are not kata-ts sections. */
function otherSections(doc: TomlTable, ctx: ReadContext): void {
  for (const [name, v] of Object.entries(doc)) {
    if (["hypervisor", "agent", "runtime", "factory"].includes(name)) continue;
    const file = ctx.originOf([name]);
    if (kata1Sections.has(name) && isTable(v)) {
      // [proxy.kata] and [shim.kata] are tables of tables; [netmon] is a plain table.
      const subs = Object.entries(v).filter(([, t]) => isTable(t));
      const names = subs.length > 0 && name !== "netmon" ? subs.map(([s]) => `${name}.${s}`) : [name];
      for (const n of names) {
        ctx.warnings.push(`${ctx.originOf(n.split("."))}: [${n}]: Kata 1.x section not used by kata-ts, ignored`);
      }
    } else if (isTable(v)) ctx.warnings.push(`${file}: [${name}]: unknown section, ignored`);
    else ctx.warnings.push(`${file}: ${name}: unknown key, ignored`);
  }
}

export function parseConfig(merged: Merged, d: RuntimeConfig = defaultConfig): ParsedConfig {
  const ctx: ReadContext = { issues: [], warnings: [], originOf: (keys) => merged.originOf(keys) };
  const doc = merged.doc;
  const hv = pick(doc, "hypervisor", "qemu", kataOtherHypervisors, ctx);
  const ag = pick(doc, "agent", "kata", new Set(), ctx);
  const h = hypervisor(new SectionReader(hv, ["hypervisor", "qemu"], ctx), d.hypervisor);
  const config: RuntimeConfig = {
    hypervisor: h,
    agent: agent(new SectionReader(ag, ["agent", "kata"], ctx), d.agent),
    runtime: runtime(new SectionReader(table(doc, "runtime", ctx), ["runtime"], ctx), d.runtime),
    factory: factory(new SectionReader(table(doc, "factory", ctx), ["factory"], ctx), d.factory, h),
  };
  otherSections(doc, ctx);
  const warnings = [...new Set(ctx.warnings)];
  return ctx.issues.length === 0 ? { ok: true, config, warnings } : { ok: false, issues: ctx.issues, warnings };
}
