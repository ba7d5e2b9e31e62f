// Property-based tests of per-pod annotation overrides: any annotation map, against configurations with
// various enable_annotations and valid_*_paths, never throws, names every refused annotation without
// letting control characters into the message, and changes only what an enabled annotation asked for,
// within the configured limits; with any problem nothing changes at all.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Code, isKataError } from "../base/errors.js";
import { fuzzParams } from "../../test/helpers/fuzz.js";
import {
  agentAnnotationPrefix,
  applyAnnotations,
  applyAnnotationsOrThrow,
  hypervisorAnnotationPrefix,
  isAnnotationEnabled,
  runtimeAnnotationPrefix,
} from "./annotations.js";
import { defaultConfig, maxVcpus, minMemoryMiB, minMsize9p } from "./defaults.js";
import { isCleanAbsolutePath, matchesAnyGlob } from "./glob.js";
import { kernelModuleProblem } from "./parse.js";
import type { HypervisorConfig, RuntimeConfig } from "./types.js";

/** The hypervisor annotation suffix that may change each field. */
const suffixOf: Partial<Record<keyof HypervisorConfig, string>> = {
  path: "path",
  kernel: "kernel",
  initrd: "initrd",
  image: "image",
  kernelParams: "kernel_params",
  defaultVcpus: "default_vcpus",
  defaultMaxVcpus: "default_max_vcpus",
  defaultMemoryMiB: "default_memory",
  machineType: "machine_type",
  msize9p: "msize_9p",
};

/** Path-valued fields and the glob list each annotation value must match. */
const paths = [
  ["path", "validHypervisorPaths"],
  ["kernel", "validKernelPaths"],
  ["initrd", "validInitrdPaths"],
  ["image", "validImagePaths"],
] as const;

const config: fc.Arbitrary<RuntimeConfig> = fc
  .record({
    enableAnnotations: fc.subarray([
      ".*",
      "path",
      "default_.*",
      "kernel_params|machine_type",
      "virtio_fs_extra_args",
      "(",
    ]),
    globs: fc.subarray(["/usr/bin/qemu-*", "/srv/images/*.img", "/k/*", "/k/[a-", "/*"]),
    bootFromImage: fc.boolean(),
    maxVcpus: fc.constantFrom(0, 4, maxVcpus),
  })
  .map(({ enableAnnotations, globs, bootFromImage, maxVcpus }) => ({
    ...defaultConfig,
    hypervisor: {
      ...defaultConfig.hypervisor,
      enableAnnotations,
      validHypervisorPaths: globs,
      validKernelPaths: globs,
      validInitrdPaths: globs,
      validImagePaths: globs,
      initrd: bootFromImage ? "" : "/k/initrd.img",
      image: bootFromImage ? "/srv/images/root.img" : "",
      defaultMaxVcpus: maxVcpus,
    },
  }));

const suffix = fc.oneof(
  fc.constantFrom(...Object.values(suffixOf), "jailer_path", "virtio_fs_extra_args", "enable_iommu", "x".repeat(200)),
  fc.string({ maxLength: 6 }),
);
const key = fc.oneof(
  { weight: 6, arbitrary: suffix.map((s) => hypervisorAnnotationPrefix + s) },
  {
    weight: 2,
    arbitrary: fc.constantFrom("kernel_modules", "enable_tracing", "trace_mode").map((s) => agentAnnotationPrefix + s),
  },
  { weight: 1, arbitrary: fc.string().map((s) => runtimeAnnotationPrefix + s) },
  { weight: 1, arbitrary: fc.constantFrom("io.kubernetes.cri.container-type", "io.katacontainers.pkg.x") },
  { weight: 1, arbitrary: fc.string({ unit: "binary" }) },
);
const value = fc.oneof(
  fc.constantFrom(
    ...["/usr/bin/qemu-system-x86_64", "/usr/bin/../bin/sh", "/srv/images/a.img", "/k/vmlinux", "/k/", "", "0"],
    ...["1", "2", "4", "240", "241", "128", "127", "4096", "99999999999", "q35", "pc", "true", "T", "nope"],
    ...["console=ttyS0 quiet=1", "a\u0007b", "virtio_net;9p msize=1", "bad mod;", " ; "],
  ),
  fc.string({ unit: "binary", maxLength: 12 }),
);
const aPath = fc.constantFrom("/usr/bin/qemu-system-x86_64", "/k/vmlinux", "/srv/images/a.img", "/k/a/../b", "/k/x");
const count = fc.oneof(fc.nat({ max: 300 }).map(String), fc.constantFrom("4096", "262144", "0x10", "-1", "1e3"));
/** An override that may well be accepted: a known annotation with a value of its kind. */
const plausible = fc
  .oneof(
    fc.tuple(fc.constantFrom("path", "kernel", "initrd", "image"), aPath),
    fc.tuple(fc.constantFrom("default_vcpus", "default_max_vcpus", "default_memory", "msize_9p"), count),
    fc.tuple(fc.constant("machine_type"), fc.constantFrom("q35", "microvm", "pc")),
    fc.tuple(fc.constant("kernel_params"), fc.constantFrom("quiet", "console=hvc0 panic=1", "a=1\tb=2", "x\u0085y")),
  )
  .map(([s, v]) => [hypervisorAnnotationPrefix + s, v] as const);
const plausibleAgent = fc
  .oneof(
    fc.tuple(fc.constant("kernel_modules"), fc.constantFrom("virtio_net", "a;b c=1", "", "bad mod;")),
    fc.tuple(fc.constant("enable_tracing"), fc.constantFrom("true", "F", "yes")),
  )
  .map(([s, v]) => [agentAnnotationPrefix + s, v] as const);
const annotations = fc.oneof(
  fc.array(fc.oneof(plausible, plausibleAgent), { maxLength: 3 }).map((kv) => Object.fromEntries(kv)),
  fc.dictionary(key, value, { maxKeys: 5, noNullPrototype: true }),
);

/** A host big enough that the limits the fuzzed configuration sets are the ones that bind. */
const host = { cpus: 512, memoryMiB: 1 << 30 };

describe("applyAnnotations (fuzz)", () => {
  it("applies only enabled, valid overrides within limits, or changes nothing and names each refusal", () => {
    fc.assert(
      fc.property(config, annotations, (cfg, ann) => {
        const before = structuredClone(cfg);

        const r = applyAnnotations(cfg, ann, host);

        assert.deepEqual(cfg, before, "the input configuration is not modified");
        for (const i of r.issues) {
          assert.ok(Object.hasOwn(ann, i.path), `issue path ${JSON.stringify(i.path)} is an annotation key`);
          assert.doesNotMatch(i.message, /\p{Cc}/u, "no control character reaches a message");
        }
        const orThrow = (): RuntimeConfig => applyAnnotationsOrThrow(cfg, ann, host);
        if (r.issues.length > 0) {
          assert.equal(r.config, cfg, "nothing applied when anything is refused");
          assert.throws(orThrow, (e) => isKataError(e, Code.InvalidArgument));
          return;
        }
        assert.deepEqual(orThrow(), r.config);
        const h = r.config.hypervisor;
        for (const [field, s] of Object.entries(suffixOf)) {
          // CAST: suffixOf's keys are HypervisorConfig fields.
          const f = field as keyof HypervisorConfig;
          if (JSON.stringify(h[f]) === JSON.stringify(cfg.hypervisor[f])) continue;
          assert.ok(Object.hasOwn(ann, hypervisorAnnotationPrefix + s), `${f} changed without its annotation`);
          assert.ok(isAnnotationEnabled(cfg.hypervisor.enableAnnotations, s), `${f} changed by a disabled annotation`);
        }
        for (const [f, globs] of paths) {
          if (h[f] === cfg.hypervisor[f]) continue;
          assert.ok(isCleanAbsolutePath(h[f]) && matchesAnyGlob(h[globs], h[f]), `${f} ${h[f]} is not allowed`);
        }
        assert.ok((h.initrd === "") !== (h.image === ""), "the VM boots from an initrd or an image");
        assert.ok(h.defaultVcpus >= 1 && h.defaultVcpus <= maxVcpus);
        assert.ok(h.defaultMaxVcpus === 0 || (h.defaultMaxVcpus >= h.defaultVcpus && h.defaultMaxVcpus <= maxVcpus));
        assert.ok(h.defaultMemoryMiB >= minMemoryMiB && h.msize9p >= minMsize9p);
        assert.ok(h.kernelParams.every((p) => p !== "" && !/\p{Cc}/u.test(p)));
        assert.ok(r.config.agent.kernelModules.every((m) => kernelModuleProblem(m) === undefined));
      }),
      fuzzParams(1000),
    );
  });
});
