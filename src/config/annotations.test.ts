import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isKataError } from "../base/errors.js";
import { applyAnnotations, applyAnnotationsOrThrow, isAnnotationEnabled, type HostLimits } from "./annotations.js";
import { defaultConfig } from "./defaults.js";
import type { HypervisorConfig, RuntimeConfig } from "./types.js";

const h = "io.katacontainers.config.hypervisor.";
const host: HostLimits = { cpus: 4, memoryMiB: 8192 };

function withHypervisor(over: Partial<HypervisorConfig>): RuntimeConfig {
  return { ...defaultConfig, hypervisor: { ...defaultConfig.hypervisor, ...over } };
}

function messages(config: RuntimeConfig, annotations: Record<string, string>): string[] {
  return applyAnnotations(config, annotations, host).issues.map((i) => i.message);
}

const qemuGlob = withHypervisor({
  enableAnnotations: [".*"],
  validHypervisorPaths: ["/usr/bin/qemu-system-*"],
  validKernelPaths: ["/var/cache/kata-ts/image/*"],
  validInitrdPaths: ["/var/cache/kata-ts/image/*.img"],
  validImagePaths: ["/srv/images/*.img"],
});

describe("isAnnotationEnabled", () => {
  it("matches each expression against the whole name after the hypervisor prefix", () => {
    assert.ok(isAnnotationEnabled(["path"], "path"));
    assert.ok(isAnnotationEnabled(["default_.*"], "default_memory"));
    assert.ok(!isAnnotationEnabled(["path"], "jailer_path"));
    assert.ok(!isAnnotationEnabled(["kernel"], "kernel_params"));
    assert.ok(!isAnnotationEnabled([], "path"));
  });

  it("enables virtio_fs_extra_args only by its literal name", () => {
    assert.ok(!isAnnotationEnabled([".*"], "virtio_fs_extra_args"));
    assert.ok(!isAnnotationEnabled(["virtio_fs_.*"], "virtio_fs_extra_args"));
    assert.ok(isAnnotationEnabled(["virtio_fs_extra_args"], "virtio_fs_extra_args"));
  });
});

describe("applyAnnotations", () => {
  it("applies enabled overrides and leaves the input untouched", () => {
    const config = withHypervisor({
      enableAnnotations: ["default_vcpus", "default_memory", "machine_type", "msize_9p", "kernel_params"],
      kernelParams: ["a=1", "b=2"],
    });

    const r = applyAnnotations(
      config,
      {
        [`${h}default_vcpus`]: "2",
        [`${h}default_memory`]: "512",
        [`${h}machine_type`]: "q35",
        [`${h}msize_9p`]: "65536",
        [`${h}kernel_params`]: "b=3 c",
        "io.kubernetes.cri.container-type": "sandbox",
      },
      host,
    );

    assert.deepEqual(r.issues, []);
    const got = r.config.hypervisor;
    assert.deepEqual([got.defaultVcpus, got.defaultMemoryMiB, got.machineType, got.msize9p], [2, 512, "q35", 65536]);
    assert.deepEqual(got.kernelParams, ["a=1", "b=3", "c"]);
    assert.deepEqual(config.hypervisor.kernelParams, ["a=1", "b=2"]);
  });

  it("refuses a hypervisor annotation that enable_annotations does not enable", () => {
    assert.deepEqual(messages(defaultConfig, { [`${h}path`]: "/usr/bin/qemu-system-x86_64" }), [
      `annotation ${h}path is not enabled`,
    ]);
    assert.deepEqual(
      messages(withHypervisor({ enableAnnotations: ["kernel_params"] }), { [`${h}default_memory`]: "512" }),
      [`annotation ${h}default_memory is not enabled`],
    );
  });

  it("CVE-2020-27151: refuses /bin/sh as the hypervisor path", () => {
    assert.deepEqual(messages(qemuGlob, { [`${h}path`]: "/bin/sh" }), [
      `annotation ${h}path value /bin/sh is not valid: it does not match valid_hypervisor_paths ["/usr/bin/qemu-system-*"]`,
    ]);
  });

  it("CVE-2020-27151: refuses a path that escapes the glob with ..", () => {
    assert.deepEqual(messages(qemuGlob, { [`${h}path`]: "/usr/bin/qemu-system-x/../../../bin/sh" }), [
      `annotation ${h}path value /usr/bin/qemu-system-x/../../../bin/sh is not valid: it must be an absolute path without "." or ".." components`,
    ]);
  });

  it("refuses every path override when its valid_*_paths list is empty", () => {
    const config = withHypervisor({ enableAnnotations: ["path", "kernel"] });

    assert.deepEqual(messages(config, { [`${h}path`]: "/usr/bin/qemu-system-x86_64", [`${h}kernel`]: "/k" }), [
      `annotation ${h}kernel value /k is not valid: valid_kernel_paths is empty, so no value is allowed`,
      `annotation ${h}path value /usr/bin/qemu-system-x86_64 is not valid: valid_hypervisor_paths is empty, so no value is allowed`,
    ]);
  });

  it("accepts path overrides that match their globs", () => {
    const r = applyAnnotations(
      qemuGlob,
      {
        [`${h}path`]: "/usr/bin/qemu-system-x86_64",
        [`${h}kernel`]: "/var/cache/kata-ts/image/vmlinux-6.1",
        [`${h}initrd`]: "/var/cache/kata-ts/image/debug.img",
      },
      host,
    );

    assert.deepEqual(r.issues, []);
    assert.deepEqual(
      [r.config.hypervisor.path, r.config.hypervisor.kernel, r.config.hypervisor.initrd],
      ["/usr/bin/qemu-system-x86_64", "/var/cache/kata-ts/image/vmlinux-6.1", "/var/cache/kata-ts/image/debug.img"],
    );
  });

  it("refuses an image on top of the configured initrd (a VM boots from one of them)", () => {
    assert.deepEqual(messages(qemuGlob, { [`${h}image`]: "/srv/images/a.img" }), [
      `annotation ${h}image value /srv/images/a.img is not valid: the VM would have both an initrd and an image`,
    ]);
  });

  it("GHSA-rr59-xxvx-96qr: refuses virtio_fs_extra_args even under a match-all enable_annotations", () => {
    const args = '["-o","source=/","--sandbox=none"]';

    assert.deepEqual(messages(qemuGlob, { [`${h}virtio_fs_extra_args`]: args }), [
      `annotation ${h}virtio_fs_extra_args is not enabled: enable_annotations must name virtio_fs_extra_args itself, a pattern is not enough`,
    ]);
    assert.deepEqual(messages(defaultConfig, { [`${h}virtio_fs_extra_args`]: args }), [
      `annotation ${h}virtio_fs_extra_args is not enabled`,
    ]);
    assert.deepEqual(
      messages(withHypervisor({ enableAnnotations: ["kernel_params"] }), { [`${h}virtio_fs_extra_args`]: args }),
      [`annotation ${h}virtio_fs_extra_args is not enabled`],
    );
    assert.deepEqual(
      messages(withHypervisor({ enableAnnotations: ["virtio_fs_extra_args"] }), { [`${h}virtio_fs_extra_args`]: args }),
      [`annotation ${h}virtio_fs_extra_args is not supported by kata-ts: virtio-fs is not supported yet`],
    );
  });

  it("refuses enabled Kata annotations kata-ts does not implement", () => {
    assert.deepEqual(messages(qemuGlob, { [`${h}enable_iommu`]: "true", [`${h}virtio_fs_daemon`]: "/bin/sh" }), [
      `annotation ${h}enable_iommu is not supported by kata-ts`,
      `annotation ${h}virtio_fs_daemon is not supported by kata-ts`,
    ]);
  });

  it("checks override values, numbers against the host's CPUs and memory", () => {
    const cpus = " (the host has 4 CPUs; QEMU takes at most 240)";
    const memory = " (MiB; at most the host's memory)";
    const cases: [string, string, string][] = [
      ["default_vcpus", "0", `it must be an integer between 1 and 4${cpus}`],
      ["default_vcpus", "1.5", `it must be an integer between 1 and 4${cpus}`],
      ["default_vcpus", "5", `it must be an integer between 1 and 4${cpus}`],
      ["default_max_vcpus", "999", `it must be an integer between 0 and 4${cpus}`],
      ["default_memory", "64", `it must be an integer between 128 and 8192${memory}`],
      ["default_memory", "-1", `it must be an integer between 128 and 8192${memory}`],
      ["default_memory", "8193", `it must be an integer between 128 and 8192${memory}`],
      ["machine_type", "pc", 'it must be one of "microvm", "q35"'],
      ["msize_9p", "0", "it must be an integer between 4096 and 4194304"],
      ["msize_9p", "4194305", "it must be an integer between 4096 and 4194304"],
    ];
    for (const [suffix, value, why] of cases) {
      assert.deepEqual(messages(qemuGlob, { [h + suffix]: value }), [
        `annotation ${h}${suffix} value ${value} is not valid: ${why}`,
      ]);
    }
    assert.deepEqual(messages(qemuGlob, { [`${h}kernel_params`]: "init=/bin/sh\u0000\nforged" }), [
      `annotation ${h}kernel_params value init=/bin/sh\\u0000\\u000aforged is not valid: it contains a control character`,
    ]);
  });

  it("bounds vCPUs by QEMU's limit on a host with more CPUs", () => {
    const big = applyAnnotations(qemuGlob, { [`${h}default_vcpus`]: "241" }, { cpus: 512, memoryMiB: 8192 });

    assert.deepEqual(
      big.issues.map((i) => i.message),
      [
        `annotation ${h}default_vcpus value 241 is not valid: it must be an integer between 1 and 240 (the host has 512 CPUs; QEMU takes at most 240)`,
      ],
    );
  });

  it("allows no memory override when the host's memory is unknown", () => {
    const r = applyAnnotations(qemuGlob, { [`${h}default_memory`]: "512" }, { cpus: 4, memoryMiB: undefined });

    assert.deepEqual(
      r.issues.map((i) => i.message),
      [
        `annotation ${h}default_memory value 512 is not valid: the host's memory size is unknown (no MemTotal in /proc/meminfo)`,
      ],
    );
  });

  it("refuses a value longer than its key allows before looking at it, naming the key", () => {
    const cases: [string, string, number][] = [
      [`${h}kernel_params`, "a".repeat(2048), 2047],
      [`${h}path`, `/usr/bin/qemu-system-${"x".repeat(4080)}`, 4095],
      [`${h}default_memory`, "0".repeat(11), 10],
      [`${h}machine_type`, "microvm-x", 7],
      ["io.katacontainers.config.agent.kernel_modules", "m;".repeat(2049), 4096],
      ["io.katacontainers.config.agent.enable_tracing", "truefalse", 5],
    ];
    for (const [key, value, max] of cases) {
      const [m, ...rest] = messages(qemuGlob, { [key]: value });

      assert.deepEqual(rest, []);
      assert.ok(m !== undefined && m.startsWith(`annotation ${key} value `), m);
      assert.ok(m.endsWith(`is not valid: it is ${Buffer.byteLength(value)} bytes, more than ${max}`), m);
    }
  });

  it("refuses more vCPUs than default_maxvcpus allows", () => {
    const config = withHypervisor({ enableAnnotations: ["default_vcpus"], defaultMaxVcpus: 2 });

    assert.deepEqual(messages(config, { [`${h}default_vcpus`]: "4" }), [
      `annotation ${h}default_vcpus value 4 is not valid: default_vcpus (4) exceeds default_maxvcpus (2)`,
    ]);
  });

  it("applies agent annotations without enable_annotations, as Kata does", () => {
    const r = applyAnnotations(
      defaultConfig,
      {
        "io.katacontainers.config.agent.kernel_modules": "e1000e EEE=1; i915 ;",
        "io.katacontainers.config.agent.enable_tracing": "true",
      },
      host,
    );

    assert.deepEqual(r.issues, []);
    assert.deepEqual(r.config.agent.kernelModules, ["e1000e EEE=1", "i915"]);
    assert.equal(r.config.agent.enableTracing, true);
  });

  it("refuses runtime and unknown agent annotations", () => {
    assert.deepEqual(
      messages(defaultConfig, {
        "io.katacontainers.config.runtime.disable_guest_seccomp": "false",
        "io.katacontainers.config.agent.container_pipe_size": "1",
        "io.katacontainers.config.agent.enable_tracing": "maybe",
      }),
      [
        "annotation io.katacontainers.config.agent.container_pipe_size is not supported by kata-ts",
        "annotation io.katacontainers.config.agent.enable_tracing value maybe is not valid: it must be true or false",
        "annotation io.katacontainers.config.runtime.disable_guest_seccomp is not supported by kata-ts",
      ],
    );
  });

  it("applies nothing when any annotation is bad", () => {
    const config = withHypervisor({ enableAnnotations: ["default_memory"] });

    const r = applyAnnotations(config, { [`${h}default_memory`]: "512", [`${h}path`]: "/bin/sh" }, host);

    assert.equal(r.issues.length, 1);
    assert.equal(r.config, config);
  });

  it("escapes control characters in annotation names", () => {
    assert.deepEqual(messages(defaultConfig, { [`${h}path\nforged`]: "/x" }), [
      `annotation ${h}path\\u000aforged is not enabled`,
    ]);
  });

  it("shortens long values in messages", () => {
    const value = "x".repeat(1000);

    const [m] = messages(qemuGlob, { [`${h}machine_type`]: value });

    assert.ok(m !== undefined && m.length < 400);
  });
});

describe("applyAnnotationsOrThrow", () => {
  it("throws one INVALID_ARGUMENT naming every bad annotation", () => {
    assert.throws(
      () => applyAnnotationsOrThrow(defaultConfig, { [`${h}path`]: "/bin/sh", [`${h}kernel`]: "/k" }, host),
      (e: unknown) =>
        isKataError(e, "INVALID_ARGUMENT") &&
        e.message === `annotation ${h}kernel is not enabled; annotation ${h}path is not enabled`,
    );
  });
});
