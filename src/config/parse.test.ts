import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "smol-toml";
import { defaultConfig } from "./defaults.js";
import { mergeLayers } from "./merge.js";
import { parseConfig, type ParsedConfig } from "./parse.js";
import { formatConfigIssue, type RuntimeConfig } from "./types.js";

const file = "/etc/kata-ts/configuration.toml";

function parsed(toml: string): ParsedConfig {
  return parseConfig(mergeLayers([{ file, doc: parse(toml) }]));
}

function ok(toml: string): { config: RuntimeConfig; warnings: readonly string[] } {
  const r = parsed(toml);
  assert.ok(r.ok, r.ok ? "" : r.issues.map(formatConfigIssue).join("\n"));
  return r;
}

function problems(toml: string): string[] {
  const r = parsed(toml);
  assert.ok(!r.ok, "expected problems");
  return r.issues.map(formatConfigIssue);
}

describe("parseConfig", () => {
  it("gives the defaults for an empty file", () => {
    const r = ok("");

    assert.deepEqual(r.config, defaultConfig);
    assert.deepEqual(r.warnings, []);
  });

  it("reads every supported key into the typed config", () => {
    const r = ok(`
      [hypervisor.qemu]
      path = "/opt/qemu/bin/qemu-system-x86_64"
      kernel = "/k/vmlinux"
      image = "/k/rootfs.img"
      machine_type = "q35"
      kernel_params = "  a=1   b  "
      firmware = "/k/bios.bin"
      default_vcpus = 2
      default_maxvcpus = 4
      default_memory = 512
      default_maxmemory = 4096
      memory_slots = 3
      default_bridges = 2
      block_device_driver = "virtio-scsi"
      shared_fs = "virtio-9p"
      msize_9p = 8192
      reclaim_guest_freed_memory = true
      tcg_tb_size = 64
      enable_debug = true
      disable_nesting_checks = true
      enable_annotations = ["kernel_params", "default_.*"]
      valid_hypervisor_paths = ["/opt/qemu/bin/*"]
      valid_kernel_paths = ["/k/*"]
      valid_initrd_paths = ["/k/*.img"]
      valid_image_paths = ["/k/[a-z]*.img"]
      [agent.kata]
      enable_debug = true
      enable_tracing = true
      kernel_modules = ["e1000e InterruptThrottleRate=3000,3000,3000 EEE=1"]
      debug_console_enabled = true
      dial_timeout = 10
      request_timeout_ms = 15000
      [runtime]
      enable_debug = true
      enable_tracing = true
      tracing_exporter = "file:/var/log/kata-ts/spans.jsonl"
      internetworking_model = "none"
      disable_new_netns = true
      sandbox_cgroup_only = true
      disable_guest_seccomp = false
      experimental = []
      enable_pprof = true
      create_container_timeout = 90
      [factory]
      enable_template = false
      template_path = "/run/t"
      vm_cache_number = 2
      vm_cache_endpoint = "/run/c.sock"
    `);

    assert.deepEqual(r.warnings, []);
    assert.deepEqual(r.config, {
      hypervisor: {
        path: "/opt/qemu/bin/qemu-system-x86_64",
        kernel: "/k/vmlinux",
        initrd: "",
        image: "/k/rootfs.img",
        machineType: "q35",
        kernelParams: ["a=1", "b"],
        firmware: "/k/bios.bin",
        defaultVcpus: 2,
        defaultMaxVcpus: 4,
        defaultMemoryMiB: 512,
        defaultMaxMemoryMiB: 4096,
        memorySlots: 3,
        defaultBridges: 2,
        blockDeviceDriver: "virtio-scsi",
        sharedFs: "virtio-9p",
        msize9p: 8192,
        reclaimGuestFreedMemory: true,
        tcgTbSizeMiB: 64,
        enableDebug: true,
        disableNestingChecks: true,
        enableAnnotations: ["kernel_params", "default_.*"],
        validHypervisorPaths: ["/opt/qemu/bin/*"],
        validKernelPaths: ["/k/*"],
        validInitrdPaths: ["/k/*.img"],
        validImagePaths: ["/k/[a-z]*.img"],
      },
      agent: {
        enableDebug: true,
        enableTracing: true,
        kernelModules: ["e1000e InterruptThrottleRate=3000,3000,3000 EEE=1"],
        debugConsoleEnabled: true,
        dialTimeoutMs: 10_000,
        requestTimeoutMs: 15_000,
      },
      runtime: {
        enableDebug: true,
        enableTracing: true,
        tracingExporter: { kind: "file", path: "/var/log/kata-ts/spans.jsonl" },
        internetworkingModel: "none",
        disableNewNetns: true,
        sandboxCgroupOnly: true,
        disableGuestSeccomp: false,
        experimental: [],
        enablePprof: true,
        createContainerTimeoutMs: 90_000,
      },
      factory: { enableTemplate: false, templatePath: "/run/t", vmCacheNumber: 2, vmCacheEndpoint: "/run/c.sock" },
    });
  });

  it("keeps the default initrd when the file names neither initrd nor image, and drops it when it names image", () => {
    assert.equal(
      ok("[hypervisor.qemu]\ndefault_memory = 256").config.hypervisor.initrd,
      defaultConfig.hypervisor.initrd,
    );

    const withImage = ok('[hypervisor.qemu]\nimage = "/i.img"').config.hypervisor;

    assert.deepEqual([withImage.initrd, withImage.image], ["", "/i.img"]);
  });

  it("accepts tracing_exporter none", () => {
    assert.deepEqual(ok('[runtime]\ntracing_exporter = "none"').config.runtime.tracingExporter, { kind: "none" });
  });

  const q = `${file}: [hypervisor.qemu]`;
  const cases: [name: string, toml: string, expected: string][] = [
    ["memory below the floor", "default_memory = 64", `${q} default_memory: must be an integer >= 128`],
    ["memory as a string", 'default_memory = "2048"', `${q} default_memory: must be an integer >= 128`],
    ["zero vcpus", "default_vcpus = 0", `${q} default_vcpus: must be an integer between 1 and 240`],
    ["fractional vcpus", "default_vcpus = 1.5", `${q} default_vcpus: must be an integer between 1 and 240`],
    ["negative vcpus", "default_vcpus = -1", `${q} default_vcpus: must be an integer between 1 and 240`],
    ["too many max vcpus", "default_maxvcpus = 241", `${q} default_maxvcpus: must be an integer between 0 and 240`],
    [
      "max vcpus below vcpus",
      "default_vcpus = 4\ndefault_maxvcpus = 2",
      `${q} default_maxvcpus: must be 0 or >= default_vcpus (4)`,
    ],
    ["negative max memory", "default_maxmemory = -1", `${q} default_maxmemory: must be an integer >= 0`],
    [
      "max memory below memory",
      "default_memory = 4096\ndefault_maxmemory = 2048",
      `${q} default_maxmemory: must be 0 or >= default_memory (4096)`,
    ],
    ["negative memory slots", "memory_slots = -1", `${q} memory_slots: must be an integer >= 0`],
    ["too many bridges", "default_bridges = 6", `${q} default_bridges: must be an integer between 0 and 5`],
    ["small msize", "msize_9p = 512", `${q} msize_9p: must be an integer between 4096 and 4194304`],
    ["large msize", "msize_9p = 4194305", `${q} msize_9p: must be an integer between 4096 and 4194304`],
    ["huge tb size", "tcg_tb_size = 2048", `${q} tcg_tb_size: must be an integer between 0 and 1024`],
    [
      "reclaim as a string",
      'reclaim_guest_freed_memory = "yes"',
      `${q} reclaim_guest_freed_memory: must be a boolean, not string`,
    ],
    ["relative path", 'path = "qemu"', `${q} path: must be an absolute path, not "qemu"`],
    ["empty kernel", 'kernel = ""', `${q} kernel: must be an absolute path, not ""`],
    ["relative firmware", 'firmware = "bios.bin"', `${q} firmware: must be an absolute path, not "bios.bin"`],
    ["path as a number", "path = 1", `${q} path: must be a string, not integer`],
    ["path as a date", "path = 1979-05-27", `${q} path: must be a string, not date-time`],
    ["kernel as a table", "kernel = { a = 1 }", `${q} kernel: must be a string, not table`],
    ["memory as infinity", "default_memory = inf", `${q} default_memory: must be an integer >= 128`],
    [
      "machine type pc",
      'machine_type = "pc"',
      `${q} machine_type: "pc" is not supported by kata-ts (supported: "microvm", "q35")`,
    ],
    ["unknown machine type", 'machine_type = "q53"', `${q} machine_type: must be one of "microvm", "q35", not "q53"`],
    [
      "virtio-fs",
      'shared_fs = "virtio-fs"',
      `${q} shared_fs: "virtio-fs" is not supported yet (supported: "virtio-9p")`,
    ],
    [
      "unknown block driver",
      'block_device_driver = "ide"',
      `${q} block_device_driver: must be one of "virtio-blk", "virtio-scsi", "virtio-mmio", "nvdimm", "virtio-blk-ccw", not "ide"`,
    ],
    ["debug as a string", 'enable_debug = "yes"', `${q} enable_debug: must be a boolean, not string`],
    ["kernel_params as an array", 'kernel_params = ["a"]', `${q} kernel_params: must be a string, not array`],
    [
      "both initrd and image",
      'initrd = "/i"\nimage = "/m"',
      `${q} image: cannot be set together with initrd: a VM boots from an initrd or an image, not both`,
    ],
    ["neither initrd nor image", 'initrd = ""\nimage = ""', `${q} initrd: one of initrd or image must be set`],
    [
      "annotations not an array",
      'enable_annotations = "path"',
      `${q} enable_annotations: must be an array of strings, not string`,
    ],
    [
      "annotation entry not a string",
      "enable_annotations = [1]",
      `${q} enable_annotations[0]: must be a string, not integer`,
    ],
    [
      "bad annotation regexp",
      'enable_annotations = ["path", "("]',
      `${q} enable_annotations[1]: is not a valid regular expression: Invalid regular expression: /^(?:()$/u: Unterminated group`,
    ],
    [
      "relative valid path",
      'valid_hypervisor_paths = ["qemu*"]',
      `${q} valid_hypervisor_paths[0]: must be an absolute path pattern, not "qemu*"`,
    ],
    [
      "bad glob",
      'valid_kernel_paths = ["/k/[a-"]',
      `${q} valid_kernel_paths[0]: is not a valid glob pattern: unterminated [`,
    ],
  ];
  for (const [name, body, expected] of cases) {
    it(`reports ${name}`, () => {
      assert.deepEqual(problems(`[hypervisor.qemu]\n${body}`), [expected]);
    });
  }

  const otherCases: [name: string, toml: string, expected: string][] = [
    [
      "a zero dial timeout",
      "[agent.kata]\ndial_timeout = 0",
      `${file}: [agent.kata] dial_timeout: must be an integer between 1 and 86400`,
    ],
    // Found by parse.fuzz.test.ts: 2147484 s is over 2^31-1 ms, which a Node timer turns into 1 ms.
    [
      "a create timeout no timer can hold",
      "[runtime]\ncreate_container_timeout = 2147484",
      `${file}: [runtime] create_container_timeout: must be an integer between 1 and 86400`,
    ],
    [
      "a request timeout over a day",
      "[agent.kata]\nrequest_timeout_ms = 86400001",
      `${file}: [agent.kata] request_timeout_ms: must be an integer between 100 and 86400000`,
    ],
    [
      "a bad kernel module",
      '[agent.kata]\nkernel_modules = ["  "]',
      `${file}: [agent.kata] kernel_modules[0]: must start with a module name, not "  "`,
    ],
    [
      "an unknown networking model",
      '[runtime]\ninternetworking_model = "bridged"',
      `${file}: [runtime] internetworking_model: must be one of "tcfilter", "macvtap", "none", not "bridged"`,
    ],
    [
      "disable_new_netns with tcfilter",
      "[runtime]\ndisable_new_netns = true",
      `${file}: [runtime] disable_new_netns: only works with internetworking_model = "none"`,
    ],
    [
      "an experimental feature",
      '[runtime]\nexperimental = ["newstore"]',
      `${file}: [runtime] experimental[0]: unsupported experimental feature "newstore"`,
    ],
    [
      "a bad tracing exporter",
      '[runtime]\ntracing_exporter = "jaeger"',
      `${file}: [runtime] tracing_exporter: must be "none" or "file:<absolute path>", not "jaeger"`,
    ],
    [
      "a relative tracing file",
      '[runtime]\ntracing_exporter = "file:spans.jsonl"',
      `${file}: [runtime] tracing_exporter: must be "none" or "file:<absolute path>", not "file:spans.jsonl"`,
    ],
    [
      "a negative cache",
      "[factory]\nvm_cache_number = -1",
      `${file}: [factory] vm_cache_number: must be an integer >= 0`,
    ],
    [
      "a relative template path",
      '[factory]\ntemplate_path = "t"',
      `${file}: [factory] template_path: must be an absolute path, not "t"`,
    ],
    [
      "templating with an image",
      '[hypervisor.qemu]\nimage = "/i.img"\n[factory]\nenable_template = true',
      `${file}: [factory] enable_template: requires an initrd (image is set)`,
    ],
    [
      "another hypervisor",
      "[hypervisor.clh]\npath = '/x'",
      `${file}: [hypervisor.clh]: kata-ts supports only [hypervisor.qemu]`,
    ],
    [
      "an unknown hypervisor",
      "[hypervisor.bhyve]\npath = '/x'",
      `${file}: [hypervisor.bhyve]: unknown hypervisor: kata-ts supports only [hypervisor.qemu]`,
    ],
    [
      "an unknown agent",
      "[agent.other]\nenable_debug = true",
      `${file}: [agent.other]: unknown agent: kata-ts supports only [agent.kata]`,
    ],
    ["a runtime that is not a table", "runtime = 1", `${file}: [runtime]: must be a table`],
    ["a hypervisor that is not a table", "hypervisor = 1", `${file}: [hypervisor]: must be a table`],
  ];
  for (const [name, toml, expected] of otherCases) {
    it(`reports ${name}`, () => {
      assert.deepEqual(problems(toml), [expected]);
    });
  }

  it("reports every problem at once", () => {
    const all = problems('[hypervisor.qemu]\ndefault_memory = 1\nmachine_type = "pc"\n[agent.kata]\ndial_timeout = 0');

    assert.equal(all.length, 3);
  });

  it("warns once per Kata key it ignores and words unknown keys differently", () => {
    const r = ok(`
      [hypervisor.qemu]
      rootfs_type = "ext4"
      enable_iommu = false
      defualt_memory = 512
      [agent.kata]
      cdh_api_timeout = 50
      [runtime]
      jaeger_endpoint = ""
      [factory]
      vm_cache_size = 1
    `);

    assert.deepEqual(r.warnings, [
      `${file}: [hypervisor.qemu] rootfs_type: Kata option not supported by kata-ts, ignored`,
      `${file}: [hypervisor.qemu] enable_iommu: Kata option not supported by kata-ts, ignored`,
      `${file}: [hypervisor.qemu] defualt_memory: unknown key, ignored (did you mean default_memory?)`,
      `${file}: [agent.kata] cdh_api_timeout: Kata option not supported by kata-ts, ignored`,
      `${file}: [runtime] jaeger_endpoint: Kata option not supported by kata-ts, ignored`,
      `${file}: [factory] vm_cache_size: unknown key, ignored`,
    ]);
  });

  it("takes sandbox_cgroup_only = false as true, with a warning (Kata's legacy mode is not implemented)", () => {
    const r = ok("[runtime]\nsandbox_cgroup_only = false\n");

    assert.equal(r.config.runtime.sandboxCgroupOnly, true);
    assert.deepEqual(r.warnings, [
      `${file}: [runtime] sandbox_cgroup_only: false is not implemented: taken as true (the VM and its service join the sandbox's cgroup)`,
    ]);
    assert.equal(ok("").config.runtime.sandboxCgroupOnly, true);
  });

  it("takes disable_guest_seccomp as Kata does: true unless set", () => {
    assert.equal(ok("").config.runtime.disableGuestSeccomp, true);
    assert.equal(ok("[runtime]\ndisable_guest_seccomp = false\n").config.runtime.disableGuestSeccomp, false);
  });

  it("warns about Kata 1.x sections and unknown sections", () => {
    const r = ok(`
      top = 1
      [proxy.kata]
      path = "/usr/libexec/kata-containers/kata-proxy"
      [shim.kata]
      enable_debug = true
      [netmon]
      enable_netmon = false
      [image]
      service_offload = false
    `);

    assert.deepEqual(r.warnings, [
      `${file}: top: unknown key, ignored`,
      `${file}: [proxy.kata]: Kata 1.x section not used by kata-ts, ignored`,
      `${file}: [shim.kata]: Kata 1.x section not used by kata-ts, ignored`,
      `${file}: [netmon]: Kata 1.x section not used by kata-ts, ignored`,
      `${file}: [image]: unknown section, ignored`,
    ]);
  });

  it("names the drop-in that set a bad value", () => {
    const layers = [
      { file, doc: parse("[hypervisor.qemu]\ndefault_memory = 2048") },
      { file: "/etc/kata-ts/config.d/10-mem.toml", doc: parse("[hypervisor.qemu]\ndefault_memory = 1") },
    ];

    const r = parseConfig(mergeLayers(layers));

    assert.ok(!r.ok);
    assert.deepEqual(r.issues.map(formatConfigIssue), [
      "/etc/kata-ts/config.d/10-mem.toml: [hypervisor.qemu] default_memory: must be an integer >= 128",
    ]);
  });
});
