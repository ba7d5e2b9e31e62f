// Per-pod overrides from OCI annotations (`io.katacontainers.config.*`), with Kata's security rules:
// - a hypervisor annotation applies only when its name (after `io.katacontainers.config.hypervisor.`)
//   matches an `enable_annotations` regular expression (CVE-2020-27151). kata-ts anchors each expression
//   to the whole name; Kata does not, so there "path" also enables "jailer_path";
// - a path-valued override must be a clean absolute path matching the key's valid_*_paths globs
//   (CVE-2020-27151: a pod asked for /bin/sh as its "hypervisor");
// - `virtio_fs_extra_args` is enabled only by its literal name, never by a pattern such as ".*"
//   (GHSA-rr59-xxvx-96qr: extra virtiofsd arguments exposed the host's /), and kata-ts has no virtio-fs;
// - agent annotations are not gated, as in Kata: they only change what runs inside the VM;
// - every value has a length limit, checked first, and every number a range: vcpus and memory no
//   larger than the host's (Kata: addHypervisorCPUOverrides refuses more vcpus than the host has; QEMU's
//   maxmem is the host's memory), since a pod's annotations are untrusted input.
// Every bad annotation is reported; none is applied unless all are good.
// See kata-containers src/runtime/pkg/oci/utils.go (addAnnotations) and kata-types annotations/mod.rs.

import { Code, KataError } from "../base/errors.js";
import { maxMsize9p, maxVcpus, minMemoryMiB, minMsize9p } from "./defaults.js";
import { isCleanAbsolutePath, matchesAnyGlob } from "./glob.js";
import { kernelModuleProblem, splitKernelParams } from "./parse.js";
import { machineTypes, type AgentConfig, type HypervisorConfig, type Issue, type RuntimeConfig } from "./types.js";

export const hypervisorAnnotationPrefix = "io.katacontainers.config.hypervisor.";
export const agentAnnotationPrefix = "io.katacontainers.config.agent.";
export const runtimeAnnotationPrefix = "io.katacontainers.config.runtime.";

/** Enabled only when enable_annotations lists them by name (GHSA-rr59-xxvx-96qr). */
const namedOnly: ReadonlySet<string> = new Set(["virtio_fs_extra_args"]);

/** Kubernetes caps an annotation name at 63 characters: longer suffixes are never matched against operator regexps. */
const maxSuffixLength = 128;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
interface Draft {
  readonly hypervisor: Mutable<HypervisorConfig>;
  readonly agent: Mutable<AgentConfig>;
}

/** What bounds a pod's resources on this host (HostProbe.cpuCount, memTotalMiB). */
export interface HostLimits {
  readonly cpus: number;
  /** MemTotal in MiB; undefined when /proc/meminfo could not say, and then no memory override is allowed. */
  readonly memoryMiB: number | undefined;
}

/** Applies one annotation value to the draft; returns why the value is not valid, or undefined. */
type Apply = (value: string, d: Draft, host: HostLimits) => string | undefined;

/** An override: the longest value accepted (UTF-8 bytes, checked before anything else) and how it applies. */
interface Override {
  readonly maxBytes: number;
  readonly apply: Apply;
}

/** PATH_MAX (4096) less the terminating NUL. */
const maxPathBytes = 4095;
/** x86's COMMAND_LINE_SIZE (2048) less the NUL: a longer value could never be on the guest's command line. */
const maxKernelParamsBytes = 2047;
/** A page: far more than a list of modules with their parameters needs. */
const maxKernelModulesBytes = 4096;
/** uint() takes at most 10 digits. */
const maxNumberBytes = 10;

/** True when one of the expressions matches the whole suffix. */
function patternMatches(enableAnnotations: readonly string[], suffix: string): boolean {
  if (suffix.length > maxSuffixLength) return false;
  return enableAnnotations.some((re) => {
    try {
      return new RegExp(`^(?:${re})$`, "u").test(suffix);
    } catch {
      // The loader refuses invalid expressions; one built in code matches nothing.
      return false;
    }
  });
}

export function isAnnotationEnabled(enableAnnotations: readonly string[], suffix: string): boolean {
  return namedOnly.has(suffix) ? enableAnnotations.includes(suffix) : patternMatches(enableAnnotations, suffix);
}

function uint(value: string, min: number, max: number): number | undefined {
  if (!/^[0-9]{1,10}$/.test(value)) return undefined;
  const n = Number(value);
  return n >= min && n <= max ? n : undefined;
}

function intRange(min: number, max: number, why = ""): string {
  return `it must be an integer between ${min} and ${max}${why}`;
}

function vcpusOverride(min: number, set: (d: Draft, n: number) => void): Override {
  return {
    maxBytes: maxNumberBytes,
    apply: (value, d, host) => {
      const max = Math.min(maxVcpus, host.cpus);
      const n = uint(value, min, max);
      if (n === undefined)
        return intRange(min, max, ` (the host has ${host.cpus} CPUs; QEMU takes at most ${maxVcpus})`);
      set(d, n);
      return undefined;
    },
  };
}

/** strconv.ParseBool's spellings, which Kata accepts. */
function parseBool(value: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(value)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(value)) return false;
  return undefined;
}

function pathOverride(
  listKey: keyof HypervisorConfig & `valid${string}`,
  listName: string,
  set: (d: Draft, p: string) => void,
): Override {
  return {
    maxBytes: maxPathBytes,
    apply: (value, d) => {
      const globs = d.hypervisor[listKey];
      if (!isCleanAbsolutePath(value)) return 'it must be an absolute path without "." or ".." components';
      if (globs.length === 0) return `${listName} is empty, so no value is allowed`;
      if (!matchesAnyGlob(globs, value)) return `it does not match ${listName} ${JSON.stringify(globs)}`;
      set(d, value);
      return undefined;
    },
  };
}

const hypervisorAnnotations: Readonly<Record<string, Override>> = {
  path: pathOverride("validHypervisorPaths", "valid_hypervisor_paths", (d, p) => (d.hypervisor.path = p)),
  kernel: pathOverride("validKernelPaths", "valid_kernel_paths", (d, p) => (d.hypervisor.kernel = p)),
  initrd: pathOverride("validInitrdPaths", "valid_initrd_paths", (d, p) => (d.hypervisor.initrd = p)),
  image: pathOverride("validImagePaths", "valid_image_paths", (d, p) => (d.hypervisor.image = p)),
  kernel_params: {
    maxBytes: maxKernelParamsBytes,
    apply: (value, d) => {
      if (/\p{Cc}/u.test(value.replace(/[\t\n\r]/g, " "))) return "it contains a control character";
      // Kata: an annotation parameter replaces every configured one with the same key, then is appended.
      const params = splitKernelParams(value);
      const keys = new Set(params.map((p) => p.split("=")[0]));
      d.hypervisor.kernelParams = [...d.hypervisor.kernelParams.filter((p) => !keys.has(p.split("=")[0])), ...params];
      return undefined;
    },
  },
  default_vcpus: vcpusOverride(1, (d, n) => (d.hypervisor.defaultVcpus = n)),
  default_max_vcpus: vcpusOverride(0, (d, n) => (d.hypervisor.defaultMaxVcpus = n)),
  default_memory: {
    maxBytes: maxNumberBytes,
    apply: (value, d, host) => {
      if (host.memoryMiB === undefined) return "the host's memory size is unknown (no MemTotal in /proc/meminfo)";
      const n = uint(value, minMemoryMiB, host.memoryMiB);
      if (n === undefined) return intRange(minMemoryMiB, host.memoryMiB, " (MiB; at most the host's memory)");
      d.hypervisor.defaultMemoryMiB = n;
      return undefined;
    },
  },
  machine_type: {
    maxBytes: Math.max(...machineTypes.map((m) => m.length)),
    apply: (value, d) => {
      const t = machineTypes.find((m) => m === value);
      if (t === undefined) return `it must be one of ${machineTypes.map((m) => JSON.stringify(m)).join(", ")}`;
      d.hypervisor.machineType = t;
      return undefined;
    },
  },
  msize_9p: {
    maxBytes: maxNumberBytes,
    apply: (value, d) => {
      const n = uint(value, minMsize9p, maxMsize9p);
      if (n === undefined) return intRange(minMsize9p, maxMsize9p);
      d.hypervisor.msize9p = n;
      return undefined;
    },
  },
};

const agentAnnotations: Readonly<Record<string, Override>> = {
  kernel_modules: {
    maxBytes: maxKernelModulesBytes,
    apply: (value, d) => {
      // Kata separates modules with ";" (oci.KernelModulesSeparator) and replaces the configured list.
      const modules = value
        .split(";")
        .map((m) => m.trim())
        .filter((m) => m !== "");
      const bad = modules.map(kernelModuleProblem).find((p) => p !== undefined);
      if (bad !== undefined) return `each entry ${bad}`;
      d.agent.kernelModules = modules;
      return undefined;
    },
  },
  enable_tracing: {
    maxBytes: "false".length,
    apply: (value, d) => {
      const b = parseBool(value);
      if (b === undefined) return "it must be true or false";
      d.agent.enableTracing = b;
      return undefined;
    },
  },
};

/**
 * Annotation values are untrusted: messages show at most 200 characters of one, with control characters
 * escaped so that a value cannot forge log lines.
 */
function shown(value: string): string {
  const cut = value.length <= 200 ? value : `${value.slice(0, 200)}...`;
  return cut.replace(/\p{Cc}/gu, (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, "0")}`);
}

function overrideFor(key: string, h: HypervisorConfig): Override | string | undefined {
  if (key.startsWith(hypervisorAnnotationPrefix)) {
    const suffix = key.slice(hypervisorAnnotationPrefix.length);
    if (!isAnnotationEnabled(h.enableAnnotations, suffix)) {
      return namedOnly.has(suffix) && patternMatches(h.enableAnnotations, suffix)
        ? `is not enabled: enable_annotations must name ${suffix} itself, a pattern is not enough`
        : "is not enabled";
    }
    if (suffix === "virtio_fs_extra_args") return "is not supported by kata-ts: virtio-fs is not supported yet";
    return Object.hasOwn(hypervisorAnnotations, suffix) ? hypervisorAnnotations[suffix] : "is not supported by kata-ts";
  }
  if (key.startsWith(agentAnnotationPrefix)) {
    const suffix = key.slice(agentAnnotationPrefix.length);
    return Object.hasOwn(agentAnnotations, suffix) ? agentAnnotations[suffix] : "is not supported by kata-ts";
  }
  if (key.startsWith(runtimeAnnotationPrefix)) return "is not supported by kata-ts";
  // Not a configuration override (io.kubernetes.*, io.katacontainers.pkg.*, ...): not ours to judge.
  return undefined;
}

/**
 * The configuration with the pod's annotation overrides applied, and every problem with them. When
 * `issues` is not empty, `config` is the input unchanged: a pod is never run half-overridden.
 */
export function applyAnnotations(
  config: RuntimeConfig,
  annotations: Readonly<Record<string, string>>,
  host: HostLimits,
): { config: RuntimeConfig; issues: Issue[] } {
  const d: Draft = { hypervisor: { ...config.hypervisor }, agent: { ...config.agent } };
  const issues: Issue[] = [];
  for (const key of Object.keys(annotations).sort()) {
    const value = annotations[key] ?? "";
    const o = overrideFor(key, config.hypervisor);
    if (o === undefined) continue;
    if (typeof o === "string") {
      issues.push({ path: key, message: `annotation ${shown(key)} ${o}` });
      continue;
    }
    const bytes = Buffer.byteLength(value);
    const why = bytes > o.maxBytes ? `it is ${bytes} bytes, more than ${o.maxBytes}` : o.apply(value, d, host);
    if (why !== undefined) {
      issues.push({ path: key, message: `annotation ${shown(key)} value ${shown(value)} is not valid: ${why}` });
    }
  }
  const h = d.hypervisor;
  const given = (suffix: string): boolean => Object.hasOwn(annotations, hypervisorAnnotationPrefix + suffix);
  const bootKey = ["image", "initrd"].filter(given).map((s) => hypervisorAnnotationPrefix + s)[0];
  if (issues.length === 0 && bootKey !== undefined && h.initrd !== "" && h.image !== "") {
    const message = `annotation ${bootKey} value ${shown(annotations[bootKey] ?? "")} is not valid: the VM would have both an initrd and an image`;
    issues.push({ path: bootKey, message });
  }
  if (issues.length === 0 && h.defaultMaxVcpus !== 0 && h.defaultMaxVcpus < h.defaultVcpus) {
    const key = hypervisorAnnotationPrefix + (given("default_vcpus") ? "default_vcpus" : "default_max_vcpus");
    const message = `annotation ${key} value ${shown(annotations[key] ?? "")} is not valid: default_vcpus (${h.defaultVcpus}) exceeds default_maxvcpus (${h.defaultMaxVcpus})`;
    issues.push({ path: key, message });
  }
  if (issues.length > 0) return { config, issues };
  return { config: { ...config, hypervisor: d.hypervisor, agent: d.agent }, issues };
}

/** applyAnnotations for callers that stop on any problem: one INVALID_ARGUMENT listing them all. */
export function applyAnnotationsOrThrow(
  config: RuntimeConfig,
  annotations: Readonly<Record<string, string>>,
  host: HostLimits,
): RuntimeConfig {
  const r = applyAnnotations(config, annotations, host);
  if (r.issues.length === 0) return r.config;
  throw new KataError(Code.InvalidArgument, r.issues.map((i) => i.message).join("; "), {
    details: { problems: r.issues.length },
  });
}
