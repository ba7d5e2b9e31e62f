import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { isKataError } from "../base/errors.js";
import { builtInSource, defaultConfig } from "./defaults.js";
import { loadConfig } from "./load.js";

/** The repository root: the nearest ancestor with a package.json (works from src/ under tsx and from dist/). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    assert.notEqual(up, dir, "no package.json above the test file");
    dir = up;
  }
  return dir;
}

const kataFixture = join(repoRoot(), "test", "fixtures", "config", "kata-configuration-qemu.toml");

let root = "";
let n = 0;

/** A fresh directory with the given files (paths relative to it). */
async function tree(files: Record<string, string>): Promise<string> {
  const dir = join(root, String(n++));
  await mkdir(dir);
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
  return dir;
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Error);
    return e;
  }
  assert.fail("expected a rejection");
}

describe("loadConfig", () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "kata-ts-config-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("fails with NOT_FOUND when the --config file does not exist, without trying the search paths", async () => {
    const dir = await tree({ "etc/configuration.toml": "" });
    const missing = join(dir, "nope.toml");

    const e = await rejection(loadConfig({ configPath: missing, searchPaths: [join(dir, "etc/configuration.toml")] }));

    assert.ok(isKataError(e, "NOT_FOUND"));
    assert.equal(e.message, `configuration file ${missing} does not exist`);
  });

  it("refuses a configuration file larger than 1 MiB before reading it", async () => {
    const dir = await tree({ "big.toml": `# ${"x".repeat(1 << 20)}\n` });

    const e = await rejection(loadConfig({ configPath: join(dir, "big.toml") }));

    assert.ok(isKataError(e, "INVALID_ARGUMENT"));
    assert.match(e.message, /big\.toml is \d+ bytes, more than 1048576/);
  });

  it("uses the --config file over the search paths", async () => {
    const dir = await tree({ "mine.toml": "[hypervisor.qemu]\ndefault_memory = 256", "etc/configuration.toml": "" });

    const r = await loadConfig({
      configPath: join(dir, "mine.toml"),
      searchPaths: [join(dir, "etc/configuration.toml")],
    });

    assert.equal(r.source, join(dir, "mine.toml"));
    assert.equal(r.config.hypervisor.defaultMemoryMiB, 256);
  });

  it("prefers the first search path (/etc) over the second (/usr/share)", async () => {
    const dir = await tree({
      "etc/configuration.toml": "[hypervisor.qemu]\ndefault_memory = 256",
      "usr/configuration.toml": "[hypervisor.qemu]\ndefault_memory = 512",
    });
    const searchPaths = [join(dir, "etc/configuration.toml"), join(dir, "usr/configuration.toml")];

    const r = await loadConfig({ searchPaths });

    assert.equal(r.source, searchPaths[0]);
    assert.equal(r.config.hypervisor.defaultMemoryMiB, 256);
  });

  it("falls back to the second search path when the first does not exist", async () => {
    const dir = await tree({ "usr/configuration.toml": "[hypervisor.qemu]\ndefault_memory = 512" });
    const searchPaths = [join(dir, "etc/configuration.toml"), join(dir, "usr/configuration.toml")];

    const r = await loadConfig({ searchPaths });

    assert.equal(r.source, searchPaths[1]);
    assert.equal(r.config.hypervisor.defaultMemoryMiB, 512);
  });

  it("uses the built-in defaults when no file exists", async () => {
    const dir = await tree({});

    const r = await loadConfig({
      searchPaths: [join(dir, "etc/configuration.toml"), join(dir, "usr/configuration.toml")],
    });

    assert.deepEqual(r, { config: defaultConfig, source: builtInSource, dropIns: [], warnings: [] });
  });

  it("merges config.d/*.toml over the file in lexical order and names what it skipped", async () => {
    const dir = await tree({
      "configuration.toml": "[hypervisor.qemu]\ndefault_memory = 2048\ndefault_vcpus = 2",
      "config.d/20-mem.toml": "[hypervisor.qemu]\ndefault_memory = 1024",
      "config.d/10-mem.toml": "[hypervisor.qemu]\ndefault_memory = 512\n[agent.kata]\nenable_debug = true",
      "config.d/15-notes.txt": "not toml",
    });

    const r = await loadConfig({ configPath: join(dir, "configuration.toml") });

    assert.deepEqual(r.dropIns, [join(dir, "config.d/10-mem.toml"), join(dir, "config.d/20-mem.toml")]);
    assert.equal(r.config.hypervisor.defaultMemoryMiB, 1024);
    assert.equal(r.config.hypervisor.defaultVcpus, 2);
    assert.equal(r.config.agent.enableDebug, true);
    assert.deepEqual(r.warnings, [`${join(dir, "config.d/15-notes.txt")}: ignored (drop-in files must end in .toml)`]);
  });

  it("reads drop-ins only beside the chosen file", async () => {
    const dir = await tree({
      "etc/configuration.toml": "",
      "usr/configuration.toml": "",
      "usr/config.d/10.toml": "[hypervisor.qemu]\ndefault_memory = 512",
    });

    const r = await loadConfig({
      searchPaths: [join(dir, "etc/configuration.toml"), join(dir, "usr/configuration.toml")],
    });

    assert.deepEqual(r.dropIns, []);
    assert.equal(r.config.hypervisor.defaultMemoryMiB, 2048);
  });

  it("refuses a drop-in that is not a regular file", async () => {
    const dir = await tree({ "configuration.toml": "", "config.d/10.toml/x": "" });

    const e = await rejection(loadConfig({ configPath: join(dir, "configuration.toml") }));

    assert.ok(isKataError(e, "INVALID_ARGUMENT"));
    assert.equal(e.message, `invalid configuration: ${join(dir, "config.d/10.toml")}: not a regular file`);
  });

  it("refuses a dangling drop-in symlink", async () => {
    const dir = await tree({ "configuration.toml": "" });
    await mkdir(join(dir, "config.d"));
    await symlink(join(dir, "gone.toml"), join(dir, "config.d/10.toml"));

    const e = await rejection(loadConfig({ configPath: join(dir, "configuration.toml") }));

    assert.ok(isKataError(e, "INVALID_ARGUMENT"));
    assert.equal(e.message, `invalid configuration: ${join(dir, "config.d/10.toml")}: dangling symbolic link`);
  });

  it("follows a drop-in symlink to a file", async () => {
    const dir = await tree({ "configuration.toml": "", "shared/mem.toml": "[hypervisor.qemu]\ndefault_memory = 512" });
    await mkdir(join(dir, "config.d"));
    await symlink(join(dir, "shared/mem.toml"), join(dir, "config.d/10.toml"));

    const r = await loadConfig({ configPath: join(dir, "configuration.toml") });

    assert.equal(r.config.hypervisor.defaultMemoryMiB, 512);
  });

  it("refuses a --config that is a directory", async () => {
    const dir = await tree({});

    const e = await rejection(loadConfig({ configPath: dir }));

    assert.ok(isKataError(e, "INVALID_ARGUMENT"));
    assert.equal(e.message, `configuration file ${dir} is a directory`);
  });

  it("names the file, line and column of TOML syntax errors in every file", async () => {
    const dir = await tree({
      "configuration.toml": "[hypervisor.qemu]\ndefault_memory = \n",
      "config.d/10.toml": "[runtime\n",
    });
    const main = join(dir, "configuration.toml");

    const e = await rejection(loadConfig({ configPath: main }));

    assert.ok(isKataError(e, "INVALID_ARGUMENT"));
    assert.equal(
      e.message,
      [
        "invalid configuration (2 problems):",
        `  ${main}:2:18: invalid TOML: invalid value`,
        `  ${join(dir, "config.d/10.toml")}:1:9: invalid TOML: illegal character in key`,
      ].join("\n"),
    );
  });

  it("refuses __proto__ keys as invalid TOML", async () => {
    const dir = await tree({ "configuration.toml": "[hypervisor.qemu]\n__proto__ = 1\n" });

    const e = await rejection(loadConfig({ configPath: join(dir, "configuration.toml") }));

    assert.ok(isKataError(e, "INVALID_ARGUMENT"));
    assert.match(e.message, /configuration\.toml:2:\d+: invalid TOML: /);
  });

  // Found by parse.fuzz.test.ts: smol-toml bounds inline nesting only, and merging overflowed the stack.
  it("refuses tables nested thousands deep by dotted keys, instead of overflowing the stack", async () => {
    const dir = await tree({ "configuration.toml": `${"a.".repeat(5000)}b = 1\n` });

    const e = await rejection(loadConfig({ configPath: join(dir, "configuration.toml") }));

    assert.ok(isKataError(e, "INVALID_ARGUMENT"), String(e));
    assert.match(e.message, /configuration\.toml: invalid TOML: tables or arrays nested deeper than 32 levels$/);
  });

  it("reports every invalid key of every file in one INVALID_ARGUMENT", async () => {
    const dir = await tree({
      "configuration.toml": '[hypervisor.qemu]\nmachine_type = "pc"\n',
      "config.d/10.toml": "[hypervisor.qemu]\ndefault_memory = 64\n",
    });
    const main = join(dir, "configuration.toml");

    const e = await rejection(loadConfig({ configPath: main }));

    assert.ok(isKataError(e, "INVALID_ARGUMENT"));
    assert.equal(
      e.message,
      [
        "invalid configuration (2 problems):",
        `  ${main}: [hypervisor.qemu] machine_type: "pc" is not supported by kata-ts (supported: "microvm", "q35")`,
        `  ${join(dir, "config.d/10.toml")}: [hypervisor.qemu] default_memory: must be an integer >= 128`,
      ].join("\n"),
    );
  });

  it("loads Kata's own configuration-qemu.toml as is, with each ignored Kata key warned about once", async () => {
    const r = await loadConfig({ configPath: kataFixture });

    assert.equal(r.source, kataFixture);
    assert.equal(new Set(r.warnings).size, r.warnings.length);
    const cgroupOnly = `${kataFixture}: [runtime] sandbox_cgroup_only: false is not implemented: taken as true (the VM and its service join the sandbox's cgroup)`;
    assert.ok(r.warnings.includes(cgroupOnly));
    for (const w of r.warnings.filter((x) => x !== cgroupOnly)) {
      assert.match(w, /: Kata option not supported by kata-ts, ignored$/);
    }
    assert.ok(
      r.warnings.includes(
        `${kataFixture}: [hypervisor.qemu] rootfs_type: Kata option not supported by kata-ts, ignored`,
      ),
    );
    assert.ok(
      r.warnings.includes(`${kataFixture}: [runtime] jaeger_endpoint: Kata option not supported by kata-ts, ignored`),
    );
    assert.ok(
      r.warnings.includes(
        `${kataFixture}: [agent.kata] cdh_api_timeout: Kata option not supported by kata-ts, ignored`,
      ),
    );
    const h = r.config.hypervisor;
    assert.deepEqual(
      [h.path, h.kernel, h.initrd, h.image, h.machineType],
      [
        "/usr/bin/qemu-system-x86_64",
        "/usr/share/kata-containers/vmlinux.container",
        "",
        "/usr/share/kata-containers/kata-containers.img",
        "q35",
      ],
    );
    assert.deepEqual(h.kernelParams, ["cgroup_no_v1=all", "systemd.unified_cgroup_hierarchy=1"]);
    assert.deepEqual([h.defaultVcpus, h.defaultMaxVcpus, h.defaultMemoryMiB, h.msize9p], [1, 0, 2048, 8192]);
    assert.deepEqual(h.enableAnnotations, ["enable_iommu", "kernel_params", "kernel_verity_params"]);
    assert.deepEqual(h.validHypervisorPaths, ["/usr/bin/qemu-system-x86_64"]);
    assert.equal(r.config.agent.dialTimeoutMs, 45_000);
    assert.equal(r.config.factory.templatePath, "/run/vc/vm/template");
  });

  it("warns once about a Kata key set in the file and again in a drop-in, naming the drop-in", async () => {
    const dir = await tree({
      "configuration.toml": "[hypervisor.qemu]\nenable_iommu = false\n",
      "config.d/10.toml": "[hypervisor.qemu]\nenable_iommu = true\n",
    });

    const r = await loadConfig({ configPath: join(dir, "configuration.toml") });

    assert.deepEqual(r.warnings, [
      `${join(dir, "config.d/10.toml")}: [hypervisor.qemu] enable_iommu: Kata option not supported by kata-ts, ignored`,
    ]);
  });
});
