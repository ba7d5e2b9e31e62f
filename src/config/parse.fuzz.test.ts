// Property-based tests of configuration.toml handling: any text gives a document or one problem naming the
// file; any tables (the keys kata-ts reads, Kata's, unknown ones, with values of every TOML type) give a
// config that keeps the documented invariants or issues naming a file, a section and a key; loadConfig
// on files gives a config or one INVALID_ARGUMENT. Nothing else is ever thrown.

import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { stringify, TomlDate } from "smol-toml";
import { Code } from "../base/errors.js";
import { fuzzParams, onlyKataErrorAsync } from "../../test/helpers/fuzz.js";
import { maxBridges, maxVcpus, minMemoryMiB, minMsize9p } from "./defaults.js";
import { loadConfig, parseToml } from "./load.js";
import { mergeLayers, type TomlTable } from "./merge.js";
import { kernelModuleProblem, parseConfig } from "./parse.js";
import { globProblem, regexProblem } from "./section-reader.js";
import { blockDeviceDrivers, internetworkingModels, machineTypes, type RuntimeConfig } from "./types.js";

/** Strings that mean something to some key, and some that do not. */
const str = fc.oneof(
  fc.constantFrom(
    ...["", "/usr/bin/qemu-system-x86_64", "/k/vmlinux", "relative/path", "/a/../b", "microvm", "q35", "pc"],
    ...["virtio-blk", "virtio-9p", "virtio-fs", "none", "tcfilter", "file:/tmp/trace.json", "file:rel", ".*"],
    ...["(", "kernel_params", "/usr/bin/*", "/a/[", "/a/[!b]", "\\", "virtio_net", "9p msize=1", "bad mod;"],
    ...["console=ttyS0 quiet", "a\u0000b"],
  ),
  fc.string({ maxLength: 8 }),
);
const int = fc.oneof(
  fc.integer({ min: -2, max: 300 }),
  fc.constantFrom(4096, 262144, 86_400, 2_147_483, 2_147_484, 2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER),
  fc.integer(),
);
const scalar = fc.oneof(
  { weight: 4, arbitrary: str },
  { weight: 3, arbitrary: int },
  { weight: 2, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.constant(new TomlDate("1979-05-27T07:32:00Z")) },
);
const value = fc.oneof(
  { weight: 6, arbitrary: scalar },
  { weight: 3, arbitrary: fc.array(fc.oneof({ weight: 5, arbitrary: str }, scalar), { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 4 }), scalar, { maxKeys: 2, noNullPrototype: true }) },
);

const path_ = fc.oneof(fc.constantFrom("/usr/bin/qemu", "/k/vmlinux", "/run/x.sock", ""), str);
const strings = (one: fc.Arbitrary<string>): fc.Arbitrary<string[]> => fc.array(one, { maxLength: 3 });
const glob = fc.oneof(fc.constantFrom("/usr/bin/*", "/opt/[a-z]*/qemu", "/a/[", "rel/*"), str);

/**
 * The keys parse.ts reads, per section, each with values mostly of its own type (so that whole configs
 * are often valid), plus a Kata-only key; every key also gets a value of any type now and then.
 */
const keys: Record<"qemu" | "kata" | "runtime" | "factory", Record<string, fc.Arbitrary<unknown>>> = {
  qemu: {
    path: path_,
    kernel: path_,
    initrd: path_,
    image: path_,
    firmware: path_,
    machine_type: fc.constantFrom("microvm", "q35", "pc", "virt"),
    kernel_params: fc.oneof(fc.constantFrom("console=ttyS0 quiet", "", " a=1\tb "), str),
    default_vcpus: int,
    default_maxvcpus: int,
    default_memory: int,
    memory_slots: int,
    default_bridges: int,
    msize_9p: int,
    block_device_driver: fc.constantFrom(...blockDeviceDrivers, "ide"),
    shared_fs: fc.constantFrom("virtio-9p", "virtio-fs", "none"),
    enable_debug: fc.boolean(),
    disable_nesting_checks: fc.boolean(),
    enable_annotations: strings(fc.constantFrom("kernel_params", "default_.*", "(", "path|image")),
    valid_hypervisor_paths: strings(glob),
    valid_kernel_paths: strings(glob),
    valid_initrd_paths: strings(glob),
    valid_image_paths: strings(glob),
    jailer_path: str,
  },
  kata: {
    enable_debug: fc.boolean(),
    enable_tracing: fc.boolean(),
    debug_console_enabled: fc.boolean(),
    kernel_modules: strings(fc.constantFrom("virtio_net", "9p msize=1", "bad mod;", "")),
    dial_timeout: int,
    request_timeout_ms: int,
    trace_mode: str,
  },
  runtime: {
    enable_debug: fc.boolean(),
    enable_tracing: fc.boolean(),
    disable_new_netns: fc.boolean(),
    sandbox_cgroup_only: fc.boolean(),
    enable_pprof: fc.boolean(),
    tracing_exporter: fc.constantFrom("none", "file:/tmp/t.json", "file:rel", "jaeger"),
    internetworking_model: fc.constantFrom(...internetworkingModels, "bridged"),
    experimental: strings(str),
    create_container_timeout: int,
    vfio_mode: str,
  },
  factory: {
    enable_template: fc.boolean(),
    template_path: path_,
    vm_cache_number: int,
    vm_cache_endpoint: path_,
  },
};

/** A section's table: some of its keys, maybe an unknown one. */
const section = (schema: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<TomlTable> =>
  fc
    .tuple(
      fc.record(
        Object.fromEntries(
          Object.entries(schema).map(([k, a]) => [
            k,
            fc.oneof({ weight: 12, arbitrary: a }, { weight: 1, arbitrary: value }),
          ]),
        ),
        { requiredKeys: [], noNullPrototype: true },
      ),
      fc.option(fc.tuple(fc.string({ minLength: 1, maxLength: 6 }), value), { freq: 3 }),
    )
    .map(([t, extra]) => (extra === null || extra[0] === "__proto__" ? t : { ...t, [extra[0]]: extra[1] }));

/** Mostly well-formed sections, and now and then a component of the wrong kind or shape. */
const doc: fc.Arbitrary<TomlTable> = fc.record(
  {
    hypervisor: fc.oneof(
      { weight: 8, arbitrary: fc.record({ qemu: section(keys.qemu) }) },
      {
        weight: 1,
        arbitrary: fc.record(
          { firecracker: section({ path: path_ }), bogus: section({ path: path_ }) },
          { requiredKeys: [] },
        ),
      },
      { weight: 1, arbitrary: value },
    ),
    agent: fc.oneof({ weight: 8, arbitrary: fc.record({ kata: section(keys.kata) }) }, value),
    runtime: fc.oneof({ weight: 8, arbitrary: section(keys.runtime) }, value),
    factory: fc.oneof({ weight: 8, arbitrary: section(keys.factory) }, value),
    proxy: fc.record({ kata: section({ path: path_ }) }),
    netmon: section({ enable_netmon: fc.boolean() }),
    unknown_top: value,
  },
  { requiredKeys: [] },
);

const files = ["/etc/kata-ts/configuration.toml", "/etc/kata-ts/config.d/10-a.toml", "/etc/kata-ts/config.d/20-b.toml"];

/** A Node timer fires at once for longer delays, so no configured timeout may exceed this. */
const maxTimerMs = 2 ** 31 - 1;

/** What parse.ts and types.ts promise of a configuration that has no issues. */
function checkInvariants(c: RuntimeConfig): void {
  const h = c.hypervisor;
  for (const p of [h.path, h.kernel, c.factory.templatePath, c.factory.vmCacheEndpoint])
    assert.ok(p.startsWith("/"), p);
  assert.ok((h.initrd === "") !== (h.image === ""), `exactly one of initrd ${h.initrd} and image ${h.image}`);
  for (const p of [h.initrd, h.image, h.firmware]) assert.ok(p === "" || p.startsWith("/"), p);
  assert.ok(machineTypes.includes(h.machineType) && blockDeviceDrivers.includes(h.blockDeviceDriver));
  assert.ok(h.defaultVcpus >= 1 && h.defaultVcpus <= maxVcpus);
  assert.ok(h.defaultMaxVcpus === 0 || (h.defaultMaxVcpus >= h.defaultVcpus && h.defaultMaxVcpus <= maxVcpus));
  assert.ok(h.defaultMemoryMiB >= minMemoryMiB && h.msize9p >= minMsize9p && h.defaultBridges <= maxBridges);
  for (const n of [h.defaultMemoryMiB, h.memorySlots, h.msize9p, c.factory.vmCacheNumber]) {
    assert.ok(Number.isSafeInteger(n), String(n));
  }
  assert.ok(h.kernelParams.every((p) => p !== "" && !/\s/.test(p)));
  assert.ok(h.enableAnnotations.every((r) => regexProblem(r) === undefined));
  for (const g of [h.validHypervisorPaths, h.validKernelPaths, h.validInitrdPaths, h.validImagePaths]) {
    assert.ok(g.every((p) => globProblem(p) === undefined));
  }
  assert.ok(c.agent.kernelModules.every((m) => kernelModuleProblem(m) === undefined));
  const timeouts = [c.agent.dialTimeoutMs, c.agent.requestTimeoutMs, c.runtime.createContainerTimeoutMs];
  for (const ms of timeouts) assert.ok(Number.isSafeInteger(ms) && ms > 0, `timeout ${ms} ms`);
  // Callers add them up (a create waits for the dial, then CreateContainer): even the sum fits a timer.
  assert.ok(timeouts.reduce((a, b) => a + b) <= maxTimerMs, `timeouts ${timeouts.join(" + ")} ms`);
  assert.ok(internetworkingModels.includes(c.runtime.internetworkingModel));
  assert.ok(!c.runtime.disableNewNetns || c.runtime.internetworkingModel === "none");
  const t = c.runtime.tracingExporter;
  assert.ok(t.kind === "none" || t.path.startsWith("/"));
  assert.ok(!c.factory.enableTemplate || h.image === "");
}

describe("configuration.toml (fuzz)", () => {
  it("any tables in one to three layers give a config keeping its invariants, or issues naming file and key", () => {
    fc.assert(
      fc.property(fc.array(doc, { minLength: 1, maxLength: 3 }), (docs) => {
        const layers = docs.map((d, i) => ({ file: files[i] ?? "", doc: d }));

        const r = parseConfig(mergeLayers(layers));

        for (const w of r.warnings)
          assert.ok(
            files.some((f) => w.startsWith(`${f}: `)),
            w,
          );
        if (r.ok) {
          checkInvariants(r.config);
          return;
        }
        assert.ok(r.issues.length > 0);
        for (const i of r.issues) {
          assert.ok(files.includes(i.file), `file of ${JSON.stringify(i)}`);
          assert.match(i.path, /^\[(hypervisor|agent|runtime|factory)[\].]/, `path of ${JSON.stringify(i)}`);
          assert.ok(i.message !== "");
        }
      }),
      fuzzParams(500),
    );
  });

  it("any text gives a document or one problem naming the file, and the document parses", () => {
    const nearToml = fc
      .tuple(doc, fc.nat(), fc.string({ unit: fc.constantFrom(...Array.from("[]{}=.\"'\n #,")), maxLength: 2 }))
      .map(([d, at, edit]) => {
        const text = stringify(d);
        const i = at % (text.length + 1);
        return text.slice(0, i) + edit + text.slice(i + 1);
      });
    const deep = fc
      .tuple(fc.integer({ min: 1, max: 6000 }), fc.constantFrom("a.", "[a."))
      .map(([n, k]) => (k === "a." ? `${k.repeat(n)}b = 1` : `[${"a.".repeat(n)}b]`));
    const text = fc.oneof(nearToml, deep, fc.string({ unit: "binary", maxLength: 30 }));

    fc.assert(
      fc.property(text, (t) => {
        const problems: string[] = [];

        const layer = parseToml(files[0] ?? "", t, problems);

        if (layer === undefined) {
          assert.equal(problems.length, 1);
          assert.ok(problems[0]?.startsWith(`${files[0] ?? ""}:`), problems[0]);
          return;
        }
        assert.deepEqual(problems, []);
        const r = parseConfig(mergeLayers([layer, layer]));
        if (r.ok) checkInvariants(r.config);
      }),
      fuzzParams(400),
    );
  });

  it("loadConfig on files gives a config or one INVALID_ARGUMENT naming the files", async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), "kata-ts-config-fuzz-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    let run = 0;

    await fc.assert(
      fc.asyncProperty(
        doc.map((d) => stringify(d)),
        fc.array(
          fc.oneof(
            doc.map((d) => stringify(d)),
            fc.string(),
          ),
          { maxLength: 2 },
        ),
        async (main, dropIns) => {
          const root = path.join(dir, String(run++));
          await mkdir(path.join(root, "config.d"), { recursive: true });
          const file = path.join(root, "configuration.toml");
          await writeFile(file, main);
          for (const [i, text] of dropIns.entries()) await writeFile(path.join(root, "config.d", `${i}.toml`), text);

          const r = await onlyKataErrorAsync(() => loadConfig({ configPath: file }));

          if (r.ok) checkInvariants(r.value.config);
          else {
            assert.equal(r.error.code, Code.InvalidArgument);
            assert.ok(r.error.message.includes(root), r.error.message);
          }
        },
      ),
      fuzzParams(40),
    );
  });
});
