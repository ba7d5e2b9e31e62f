// Bad input to the create path through the OCI CLI: one clear error each, and nothing left behind (no
// QEMU, no mount, no network namespace, no state or mapping directory).

import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Spec } from "../../src/oci/spec.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, netnsLeft, removeRunRoot, runCli, runCliToFiles } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const runner = new NodeProcessRunner();
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };
const vmTimeout = 180_000;
const cri = (type: string, sandboxId?: string): Record<string, string> => ({
  "io.kubernetes.cri.container-type": type,
  ...(sandboxId === undefined ? {} : { "io.kubernetes.cri.sandbox-id": sandboxId }),
});

describe("create with bad input (real services)", { skip: requires("root", "qemu", "image", "netns") }, () => {
  let work = "";
  let root = "";
  let n = 0;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-cbad-"));
    root = await makeRunRoot();
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  async function bundle(edit: (s: Spec) => void, args = ["true"]): Promise<string> {
    return makeBusyboxBundle({ runner }, { dir: path.join(work, `b${++n}`), args, edit });
  }

  /** `kata-ts create` must fail with one line naming the problem, leaving nothing. */
  async function createFails(id: string, dir: string, global: string[] = []): Promise<string> {
    const r = await runCli(["--root", root, ...global, "create", "--bundle", dir, id], { env, timeoutMs: vmTimeout });
    assert.notEqual(r.code, 0, `create ${id} should fail`);
    assert.equal(r.stderr.trim().startsWith("kata-ts: "), true, r.stderr);
    assert.deepEqual(await leftovers(root), [], `leftovers after ${id}`);
    assert.deepEqual(await netnsLeft([id]), []);
    return r.stderr;
  }

  it("lists config.json fields that are missing or of the wrong type", async () => {
    const dir = await bundle(() => undefined);
    await writeFile(
      path.join(dir, "config.json"),
      JSON.stringify({
        ociVersion: "1.0.2",
        root: { path: "rootfs", readonly: "yes" },
        process: { user: { uid: 0 }, args: "sh", cwd: "relative" },
      }),
    );

    const err = await createFails("badtypes", dir);

    assert.match(err, /root\.readonly must be a boolean/);
    assert.match(err, /process\.user\.gid is required/);
    assert.match(err, /process\.args must be an array of strings/);
    assert.match(err, /process\.cwd must be an absolute path/);
  });

  for (const id of ["a/b", "..", "../x"]) {
    it(`refuses the container id ${JSON.stringify(id)} before touching the filesystem`, async () => {
      const dir = await bundle(() => undefined);

      const err = await createFails(id, dir);

      assert.match(err, /invalid container id/);
    });
  }

  it("names an unknown container type", async () => {
    const dir = await bundle((s) => (s.annotations = cri("sidecar", "p1")));

    const err = await createFails("unknowntype", dir);

    assert.match(err, /unknown container type "sidecar" in annotation io\.kubernetes\.cri\.container-type/);
  });

  it("refuses a pod container without a sandbox id", async () => {
    const dir = await bundle((s) => (s.annotations = cri("container")));

    const err = await createFails("nosid", dir);

    assert.match(err, /has no sandbox id \(io\.kubernetes\.cri\.sandbox-id\)/);
  });

  it("refuses a pod container of an unknown sandbox", async () => {
    const dir = await bundle((s) => (s.annotations = cri("container", "nosuchpod")));

    const err = await createFails("orphan", dir);

    assert.match(err, /sandbox nosuchpod does not exist/);
  });

  it("refuses host networking", async () => {
    const dir = await bundle((s) => {
      if (s.linux?.namespaces) s.linux.namespaces = s.linux.namespaces.filter((ns) => ns.type !== "network");
    });

    const err = await createFails("hostnet", dir);

    assert.match(err, /host networking requested, not supported/);
  });

  it("reports a prestart hook that exits 1 with its output", async () => {
    const dir = await bundle((s) => {
      s.hooks = { prestart: [{ path: "/bin/sh", args: ["sh", "-c", "echo hook-out; echo hook-err >&2; exit 1"] }] };
    });

    const err = await createFails("hookfail", dir);

    assert.match(err, /prestart hook \/bin\/sh failed: exit code 1/);
    assert.match(err, /stdout: hook-out/);
    assert.match(err, /stderr: hook-err/);
  });

  it("names a failing createRuntime hook by its own kind", async () => {
    const dir = await bundle((s) => {
      s.hooks = { createRuntime: [{ path: "/bin/false" }] };
    });

    const err = await createFails("hookcr", dir);

    assert.match(err, /createRuntime hook \/bin\/false failed: exit code 1/);
  });

  it("kills a prestart hook that hangs past its timeout", { timeout: 60_000 }, async () => {
    const dir = await bundle((s) => {
      s.hooks = { prestart: [{ path: "/bin/sh", args: ["sh", "-c", "sleep 100"], timeout: 1 }] };
    });

    const err = await createFails("hookhang", dir);

    assert.match(err, /prestart hook \/bin\/sh timed out after 1s/);
  });

  it("refuses a hypervisor path annotation outside valid_hypervisor_paths", async () => {
    const cfg = path.join(work, "annotations.toml");
    await writeFile(
      cfg,
      '[hypervisor.qemu]\nenable_annotations = ["path"]\nvalid_hypervisor_paths = ["/usr/bin/qemu-system-*"]\n',
    );
    const dir = await bundle((s) => (s.annotations = { "io.katacontainers.config.hypervisor.path": "/bin/sh" }));

    const err = await createFails("badpath", dir, ["--config", cfg]);

    assert.match(err, /io\.katacontainers\.config\.hypervisor\.path/);
    assert.match(err, /\/bin\/sh/);
    assert.match(err, /valid_hypervisor_paths/);
  });

  it("refuses an emptyDir whose source is a symlink out of its volume", { timeout: vmTimeout }, async () => {
    const volumes = path.join(work, "kubelet", "pods", "u1", "volumes", "kubernetes.io~empty-dir");
    await mkdir(volumes, { recursive: true });
    await symlink("/etc", path.join(volumes, "evil"));
    const pod = await bundle(
      (s) => (s.annotations = cri("sandbox", "podsym")),
      ["sh", "-c", "while true; do sleep 1; done"],
    );
    const created = await runCliToFiles(["--root", root, "create", "--bundle", pod, "podsym"], work, {
      env,
      timeoutMs: vmTimeout,
    });
    assert.equal(created.code, 0, created.stderr);
    try {
      const dir = await bundle((s) => {
        s.annotations = cri("container", "podsym");
        s.mounts = [
          ...(s.mounts ?? []),
          { destination: "/evil", type: "bind", source: path.join(volumes, "evil"), options: ["rbind"] },
        ];
      });

      const r = await runCli(["--root", root, "create", "--bundle", dir, "symc"], { env, timeoutMs: vmTimeout });

      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /mounts\[\d+\]\.source .*evil.* symlink/);
      const list = await runCli(["--root", root, "list", "-q"], { env });
      assert.deepEqual(list.stdout.toString().trim().split("\n"), ["podsym"]);
    } finally {
      const d = await runCli(["--root", root, "delete", "--force", "podsym"], { env, timeoutMs: vmTimeout });
      assert.equal(d.code, 0, d.stderr);
    }
    assert.deepEqual(await leftovers(root), []);
    assert.deepEqual(await netnsLeft(["podsym"]), []);
  });

  it("refuses a duplicate container id and leaves the first one alone", { timeout: vmTimeout }, async () => {
    const dir = await bundle(
      (s) => (s.annotations = cri("sandbox", "dup")),
      ["sh", "-c", "while true; do sleep 1; done"],
    );
    const first = await runCliToFiles(["--root", root, "create", "--bundle", dir, "dup"], work, {
      env,
      timeoutMs: vmTimeout,
    });
    assert.equal(first.code, 0, first.stderr);
    try {
      const second = await runCli(["--root", root, "create", "--bundle", dir, "dup"], { env, timeoutMs: vmTimeout });

      assert.notEqual(second.code, 0);
      assert.match(second.stderr, /container dup already exists/);
      const state = JSON.parse((await runCli(["--root", root, "state", "dup"], { env })).stdout.toString()) as {
        status: string;
      };
      assert.equal(state.status, "created");
    } finally {
      await runCli(["--root", root, "delete", "--force", "dup"], { env, timeoutMs: vmTimeout });
    }
    assert.deepEqual(await leftovers(root), []);
  });
});
