// Hostile input to `kata-ts create`, each named after its advisory: refused before anything starts (no VM,
// no service, no mount, netns, state or mapping), with one error naming what was refused.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Spec } from "../../src/oci/spec.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCli } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };

describe("hostile input to create (real CLI, no VM)", { skip: requires("root", "image") }, () => {
  let work = "";
  let root = "";
  let n = 0;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-sec-input-"));
    root = await makeRunRoot();
  });

  after(async () => {
    await removeRunRoot(root);
    await rm(work, { recursive: true, force: true });
  });

  async function bundle(edit: (s: Spec) => void = () => undefined): Promise<string> {
    return makeBusyboxBundle({ runner }, { dir: path.join(work, `b${++n}`), args: ["true"], edit });
  }

  async function refused(id: string, dir: string, global: string[] = []): Promise<string> {
    const r = await runCli(["--root", root, ...global, "create", "--bundle", dir, id], { env, timeoutMs: 60_000 });
    assert.notEqual(r.code, 0, `create ${JSON.stringify(id)} must be refused`);
    assert.deepEqual(await leftovers(root), []);
    return r.stderr;
  }

  for (const id of ["../escape", "a/b", "..", ".hidden", `x${"y".repeat(300)}`]) {
    it(`kata#1520: refuses the container id ${JSON.stringify(id.slice(0, 20))} before any path is built from it`, async () => {
      const err = await refused(id, await bundle());

      assert.match(err, /invalid container id|is too long|must match/);
    });
  }

  it("CVE-2020-27151: refuses a hypervisor binary named by an annotation outside valid_hypervisor_paths", async () => {
    const cfg = path.join(work, "annotations.toml");
    await writeFile(
      cfg,
      '[hypervisor.qemu]\nenable_annotations = ["path"]\nvalid_hypervisor_paths = ["/usr/bin/qemu-system-*"]\n',
    );
    const marker = path.join(work, "ran");
    const evil = path.join(work, "evil.sh");
    await writeFile(evil, `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
    const dir = await bundle((s) => (s.annotations = { "io.katacontainers.config.hypervisor.path": evil }));

    const err = await refused("badpath", dir, ["--config", cfg]);

    assert.match(err, /io\.katacontainers\.config\.hypervisor\.path/);
    assert.match(err, /valid_hypervisor_paths/);
    await assert.rejects(readFile(marker), /ENOENT/, "the annotated binary ran");
    assert.deepEqual(await netnsLeft(["badpath"]), []);
  });

  it("CVE-2020-27151: refuses annotation overrides that are not enabled, even valid ones", async () => {
    const dir = await bundle((s) => (s.annotations = { "io.katacontainers.config.hypervisor.default_memory": "256" }));

    const err = await refused("notenabled", dir);

    assert.match(err, /io\.katacontainers\.config\.hypervisor\.default_memory/);
  });

  it("refuses a config.json nested 2 million levels deep, naming where, before anything starts", async () => {
    const dir = await bundle();
    const deep = "[".repeat(2_000_000) + "]".repeat(2_000_000);
    const spec = (await readFile(path.join(dir, "config.json"), "utf8")).replace(/"annotations"|^\{/, (m) =>
      m === "{" ? `{"deep": ${deep},` : m,
    );
    await writeFile(path.join(dir, "config.json"), spec);

    const err = await refused("deep", dir);

    assert.match(err, /more than 64 deep/);
  });
});
