// The install planner: golden merged configs for containerd config versions 1, 2 and 3, an empty and a
// missing file (test/fixtures/golden/install/<case>.in.toml → <case>.out.toml), the round trip back to
// the user's bytes, and the refusals.

import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parse } from "smol-toml";
import { Code, isKataError } from "../../base/errors.js";
import {
  containerdConfigFacts,
  isKataTsLinkTarget,
  mergeContainerdConfig,
  planLinks,
  removeBlock,
  runtimeEntries,
} from "./install-plan.js";

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    assert.notEqual(up, dir, "no package.json above the test file");
    dir = up;
  }
  return dir;
}

const goldenDir = join(repoRoot(), "test", "fixtures", "golden", "install");
const file = "/etc/containerd/config.toml";
const configPath = "/opt/kata-ts/configuration.toml";

function input(name: string): string {
  return readFileSync(join(goldenDir, `${name}.in.toml`), "utf8");
}

/** Compares `actual` with test/fixtures/golden/install/<name>; UPDATE_GOLDEN=1 rewrites it. */
function assertGolden(name: string, actual: string): void {
  const f = join(goldenDir, name);
  if (process.env["UPDATE_GOLDEN"] === "1") writeFileSync(f, actual);
  assert.equal(actual, readFileSync(f, "utf8"), `golden ${f} differs (UPDATE_GOLDEN=1 rewrites it)`);
}

function refusal(f: () => unknown, re: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(isKataError(e, Code.FailedPrecondition), String(e));
    assert.match(e.message, re);
    return true;
  });
}

type Runtime = Record<string, unknown> & { options?: { ConfigPath?: string } };

function runtimeIn(text: string, pluginId: string, name = "kata-ts"): Runtime | undefined {
  // CAST: smol-toml returns nested tables as plain objects; the test reads the one path it wrote.
  const t = parse(text) as { plugins?: Record<string, { containerd?: { runtimes?: Record<string, Runtime> } }> };
  return t.plugins?.[pluginId]?.containerd?.runtimes?.[name];
}

describe("mergeContainerdConfig", () => {
  const cases = [
    { name: "v2", version: 2, pluginId: "io.containerd.grpc.v1.cri" },
    { name: "v1", version: 1, pluginId: "cri" },
    { name: "v3", version: 3, pluginId: "io.containerd.cri.v1.runtime" },
    { name: "empty", version: 2, pluginId: "io.containerd.grpc.v1.cri" },
    { name: "comments-only", version: 2, pluginId: "io.containerd.grpc.v1.cri" },
    { name: "no-final-newline", version: 2, pluginId: "io.containerd.grpc.v1.cri" },
  ] as const;
  for (const c of cases) {
    it(`${c.name}: appends the block (golden), keeps the user's bytes, and removing it gives them back`, () => {
      const original = input(c.name);
      const plan = mergeContainerdConfig(file, original, { configPath });
      assertGolden(`${c.name}.out.toml`, plan.text);
      assert.equal(plan.version, c.version);
      assert.equal(plan.pluginId, c.pluginId);
      assert.equal(plan.changed, true);
      assert.equal(plan.created, false);
      assert.ok(plan.text.startsWith(original), "the user's text is untouched, before the block");
      const rt = runtimeIn(plan.text, c.pluginId);
      assert.equal(rt?.["runtime_type"], "io.containerd.kata-ts.v2");
      assert.deepEqual(rt["pod_annotations"], ["io.katacontainers.*"]);
      assert.equal(rt.options?.ConfigPath, configPath);
      const runc = runtimeIn(plan.text, c.pluginId, "runc");
      assert.ok(runc !== undefined || c.name === "v1", "containerd's default runtime stays defined");
      const back = removeBlock(file, plan.text);
      assert.equal(back.text, original, "byte-for-byte");
      assert.equal(back.removed, true);
      assert.equal(back.deleteFile, false, "kata-ts did not create this file");
    });
  }

  it("a missing file: created with version 2 and the block; removing the block deletes it", () => {
    const plan = mergeContainerdConfig(file, undefined, {});
    assertGolden("missing.out.toml", plan.text);
    assert.equal(plan.created, true);
    assert.equal(runtimeIn(plan.text, "io.containerd.grpc.v1.cri")?.options, undefined, "no ConfigPath asked for");
    assert.deepEqual(removeBlock(file, plan.text), { text: "", removed: true, deleteFile: true });
    // Installed again over its own file: still kata-ts's file.
    assert.equal(mergeContainerdConfig(file, plan.text, {}).created, true);
  });

  it("is idempotent, and a second install with another ConfigPath replaces only the block", () => {
    const original = input("v2");
    const first = mergeContainerdConfig(file, original, { configPath });
    const again = mergeContainerdConfig(file, first.text, { configPath });
    assert.equal(again.changed, false);
    assert.equal(again.text, first.text);
    const moved = mergeContainerdConfig(file, first.text, { configPath: "/etc/kata-ts/other.toml" });
    assert.equal(moved.changed, true);
    assert.equal(runtimeIn(moved.text, "io.containerd.grpc.v1.cri")?.options?.ConfigPath, "/etc/kata-ts/other.toml");
    assert.equal(removeBlock(file, moved.text).text, original);
  });

  it("keeps text the user added after the block, and removes only the block", () => {
    const first = mergeContainerdConfig(file, input("v1"), {});
    const edited = `${first.text}[metrics]\n  address = "127.0.0.1:1338"\n`;
    const again = mergeContainerdConfig(file, edited, {});
    assert.match(again.text, /\[metrics\]/);
    assert.equal(removeBlock(file, edited).text, `${input("v1")}[metrics]\n  address = "127.0.0.1:1338"\n`);
  });

  it("refuses a kata-ts runtime table the user wrote, naming the table", () => {
    const own = `${input("v2")}[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-ts]\n  runtime_type = "x"\n`;
    refusal(
      () => mergeContainerdConfig(file, own, {}),
      /already has \[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.kata-ts\] outside/,
    );
    const v1own = `[plugins.cri.containerd.runtimes.kata-ts]\n  runtime_type = "x"\n`;
    refusal(() => mergeContainerdConfig(file, v1own, {}), /\[plugins\.cri\.containerd\.runtimes\.kata-ts\]/);
  });

  it("refuses a config that is not TOML, and one the block cannot be appended to", () => {
    refusal(() => mergeContainerdConfig(file, "version = 2\n[grpc\n", {}), /the containerd config is not valid TOML/);
    // runtimes as an inline table cannot be extended by a later [table] header.
    const inline =
      'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  runtimes = { runc = { runtime_type = "io.containerd.runc.v2" } }\n';
    refusal(() => mergeContainerdConfig(file, inline, {}), /with kata-ts's block appended is not valid TOML/);
    refusal(() => mergeContainerdConfig(file, "version = 7\n", {}), /version = 7/);
  });

  it("refuses a block without its end marker, and two blocks", () => {
    refusal(
      () => mergeContainerdConfig(file, "version = 2\n# BEGIN kata-ts: x\n[a]\n", {}),
      /without a "# END kata-ts"/,
    );
    const one = mergeContainerdConfig(file, "version = 2\n", {}).text;
    refusal(() => removeBlock(file, one + one), /more than one/);
  });

  it("warns when the CRI plugin is disabled", () => {
    const plan = mergeContainerdConfig(file, 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n', {});
    assert.equal(plan.warnings.length, 1);
    assert.match(plan.warnings[0] ?? "", /disables the CRI plugin/);
    assert.deepEqual(mergeContainerdConfig(file, input("v2"), {}).warnings, []);
  });
});

describe("runtimeEntries and containerdConfigFacts", () => {
  it("prints the tables for each version, ConfigPath only when given", () => {
    assertGolden("entries-v1.toml", runtimeEntries(1, {}));
    assertGolden("entries-v2-config-path.toml", runtimeEntries(2, { configPath: '/odd "path"/c.toml' }));
    assert.equal(
      (parse(runtimeEntries(2, { configPath: '/odd "path"/c.toml' })) as { plugins: unknown }).plugins !== undefined,
      true,
    );
  });

  it("reads the version (none is 1, a missing or empty file 2) and whether runc must be named", () => {
    assert.deepEqual(containerdConfigFacts(file, input("v1")), { version: 1, withRunc: false }, "default_runtime");
    assert.deepEqual(containerdConfigFacts(file, input("v2")), { version: 2, withRunc: false }, "runc named");
    assert.deepEqual(containerdConfigFacts(file, input("v3")), { version: 3, withRunc: true });
    assert.deepEqual(containerdConfigFacts(file, undefined), { version: 2, withRunc: true });
    assert.deepEqual(containerdConfigFacts(file, ""), { version: 2, withRunc: true });
    const crun = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "crun"\n';
    assert.deepEqual(containerdConfigFacts(file, crun), { version: 2, withRunc: false }, "not runc: left alone");
  });
});

describe("planLinks", () => {
  it("links the shim and the CLI to their launchers, or to a release's wrappers", () => {
    assert.deepEqual(planLinks("/src/kata-ts", "/usr/local/bin", false), [
      {
        name: "containerd-shim-kata-ts-v2",
        path: "/usr/local/bin/containerd-shim-kata-ts-v2",
        target: "/src/kata-ts/bin/containerd-shim-kata-ts-v2",
      },
      { name: "kata-ts", path: "/usr/local/bin/kata-ts", target: "/src/kata-ts/bin/kata-ts" },
    ]);
    assert.deepEqual(
      planLinks("/opt/kata-ts", "/usr/local/bin", true).map((l) => l.target),
      ["/opt/kata-ts/dist/bin/containerd-shim-kata-ts-v2", "/opt/kata-ts/dist/bin/kata-ts"],
    );
  });

  it("knows kata-ts's links (any install, npm's relative ones) from others", () => {
    const shim = "containerd-shim-kata-ts-v2";
    assert.equal(isKataTsLinkTarget(shim, "/old/kata-ts/dist/src/cli/containerd-shim-main.js"), true);
    assert.equal(isKataTsLinkTarget(shim, "../lib/node_modules/kata-ts/dist/src/cli/containerd-shim-main.js"), true);
    assert.equal(isKataTsLinkTarget(shim, "/opt/kata-ts/dist/bin/containerd-shim-kata-ts-v2"), true);
    assert.equal(isKataTsLinkTarget("kata-ts", "/usr/bin/kata-ts"), false, "a launcher's path alone proves nothing");
    assert.equal(isKataTsLinkTarget(shim, "/usr/bin/containerd-shim-kata-ts-v2"), false);
    assert.equal(isKataTsLinkTarget(shim, "/x/dist/src/cli/kata-ts-main.js"), false, "the CLI is not the shim");
    assert.equal(isKataTsLinkTarget("kata-ts", "/x/dist/src/cli/kata-ts-main.js"), true);
  });
});
