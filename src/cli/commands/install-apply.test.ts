// The install applier and command on the real file system under a temp dir (NodeInstallFs): links,
// refusals that change nothing, the backup, the round trip of --uninstall, and what is printed.

import assert from "node:assert/strict";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  readdir,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, isKataError } from "../../base/errors.js";
import { NodeInstallFs, backupPath, install, uninstall, type InstallOptions } from "./install-apply.js";
import { runInstall } from "./install.js";

const fs = new NodeInstallFs();
const v2 = '# mine\nversion = 2\n[grpc]\n  address = "/run/c.sock"\n';

let dir = "";
let opts: InstallOptions;

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    (e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw e;
    },
  );
}

async function rejectsWith(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isKataError(e, Code.FailedPrecondition), String(e));
    assert.match(e.message, re);
    return true;
  });
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "kata-ts-install-"));
  const root = path.join(dir, "kata-ts");
  await mkdir(path.join(root, "bin"), { recursive: true });
  await writeFile(path.join(root, "bin/containerd-shim-kata-ts-v2"), "");
  await writeFile(path.join(root, "bin/kata-ts"), "");
  await mkdir(path.join(dir, "bin"));
  await mkdir(path.join(dir, "etc"));
  opts = {
    installRoot: root,
    binDir: path.join(dir, "bin"),
    containerdConfig: path.join(dir, "etc/config.toml"),
    write: true,
    force: false,
  };
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("install and uninstall on a temp dir", () => {
  it("links, merges with a backup, is idempotent, and --uninstall restores the file byte-for-byte", async () => {
    await writeFile(opts.containerdConfig, v2);
    await chmod(opts.containerdConfig, 0o640);
    const r = await install(fs, { ...opts, configPath: "/etc/kata-ts/c.toml" });
    assert.deepEqual(
      r.warnings.filter((w) => !w.startsWith("no node in")), // depends on where this host's node is
      ["--config-path /etc/kata-ts/c.toml does not exist: the shim will fail to start until it does"],
    );
    assert.equal(
      await readlink(path.join(dir, "bin/containerd-shim-kata-ts-v2")),
      path.join(opts.installRoot, "bin/containerd-shim-kata-ts-v2"),
    );
    assert.equal(await readlink(path.join(dir, "bin/kata-ts")), path.join(opts.installRoot, "bin/kata-ts"));
    const merged = await readFile(opts.containerdConfig, "utf8");
    assert.ok(merged.startsWith(v2));
    assert.match(merged, /ConfigPath = "\/etc\/kata-ts\/c\.toml"/);
    assert.equal((await stat(opts.containerdConfig)).mode & 0o777, 0o640, "the config keeps its mode");
    assert.equal(await readFile(backupPath(opts.containerdConfig), "utf8"), v2);
    assert.match(r.actions.join("\n"), /saved .*config\.toml as .*config\.toml\.kata-ts\.bak/);

    const again = await install(fs, { ...opts, configPath: "/etc/kata-ts/c.toml" });
    assert.match(
      again.actions.join("\n"),
      /already links to[^]*already links to[^]*already has kata-ts's runtime entries/,
    );
    assert.equal(await readFile(opts.containerdConfig, "utf8"), merged);

    // Another ConfigPath: the block is rewritten, the backup (of the file before kata-ts) is kept as is.
    await install(fs, { ...opts, configPath: "/etc/kata-ts/d.toml" });
    assert.match(await readFile(opts.containerdConfig, "utf8"), /d\.toml/);
    assert.equal(await readFile(backupPath(opts.containerdConfig), "utf8"), v2);

    const u = await uninstall(fs, opts);
    assert.equal(await readFile(opts.containerdConfig, "utf8"), v2);
    assert.equal((await stat(opts.containerdConfig)).mode & 0o777, 0o640);
    assert.deepEqual(await readdir(path.join(dir, "bin")), []);
    assert.deepEqual(await readdir(path.join(dir, "etc")), ["config.toml"], "backup removed: it equals the file");
    assert.equal(u.actions.length, 4, u.actions.join("\n"));
    assert.deepEqual((await uninstall(fs, opts)).actions, ["nothing of kata-ts's to remove"]);
  });

  it("refuses a file or a foreign link at a link's path and changes nothing; --force replaces it", async () => {
    await writeFile(opts.containerdConfig, v2);
    await writeFile(path.join(dir, "bin/kata-ts"), "#!/bin/sh\n");
    await rejectsWith(install(fs, opts), /bin\/kata-ts is a file, not a kata-ts link: remove it, or use --force/);
    assert.equal(await exists(path.join(dir, "bin/containerd-shim-kata-ts-v2")), false, "no link made");
    assert.equal(await readFile(opts.containerdConfig, "utf8"), v2, "config untouched");
    assert.equal(await exists(backupPath(opts.containerdConfig)), false);
    const r = await install(fs, { ...opts, force: true });
    assert.match(r.actions.join("\n"), /replaced a file at .*bin\/kata-ts by a link/);
    assert.equal((await lstat(path.join(dir, "bin/kata-ts"))).isSymbolicLink(), true);

    await rm(path.join(dir, "bin/containerd-shim-kata-ts-v2"));
    await symlink("/usr/bin/true", path.join(dir, "bin/containerd-shim-kata-ts-v2"));
    await rejectsWith(install(fs, opts), /is a link to \/usr\/bin\/true, not a kata-ts link/);
    const u = await uninstall(fs, opts);
    assert.match(u.warnings.join("\n"), /left .*containerd-shim-kata-ts-v2 alone: it is a link to \/usr\/bin\/true/);
    assert.equal(await readlink(path.join(dir, "bin/containerd-shim-kata-ts-v2")), "/usr/bin/true");
  });

  it("replaces the link of another kata-ts install, and links a release's wrappers when it has them", async () => {
    await symlink("/old/kata-ts/dist/src/cli/kata-ts-main.js", path.join(dir, "bin/kata-ts"));
    await mkdir(path.join(opts.installRoot, "dist/bin"), { recursive: true });
    for (const n of ["containerd-shim-kata-ts-v2", "kata-ts"])
      await writeFile(path.join(opts.installRoot, "dist/bin", n), "");
    const r = await install(fs, { ...opts, write: false });
    assert.match(r.actions.join("\n"), /replaced a link to \/old\/kata-ts\/dist\/src\/cli\/kata-ts-main\.js at/);
    assert.equal(await readlink(path.join(dir, "bin/kata-ts")), path.join(opts.installRoot, "dist/bin/kata-ts"));
    assert.equal(await exists(opts.containerdConfig), false, "without --write the config is not written");
  });

  it("refuses a backup that is not a copy of the config; --force overwrites it", async () => {
    await writeFile(opts.containerdConfig, v2);
    await writeFile(backupPath(opts.containerdConfig), "something the user kept\n");
    await rejectsWith(install(fs, opts), /config\.toml\.kata-ts\.bak exists and is not a copy of .*config\.toml/);
    assert.equal(await readFile(opts.containerdConfig, "utf8"), v2);
    assert.deepEqual(await readdir(path.join(dir, "bin")), [], "no link made either");
    await install(fs, { ...opts, force: true });
    assert.equal(await readFile(backupPath(opts.containerdConfig), "utf8"), v2);
  });

  it("refuses the user's own kata-ts runtime before making any link", async () => {
    const own = `${v2}[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-ts]\n  runtime_type = "x"\n`;
    await writeFile(opts.containerdConfig, own);
    await rejectsWith(install(fs, opts), /outside kata-ts's "# BEGIN kata-ts" block/);
    assert.deepEqual(await readdir(path.join(dir, "bin")), []);
    assert.equal(await readFile(opts.containerdConfig, "utf8"), own);
  });

  it("creates a missing config, and --uninstall removes it again", async () => {
    const r = await install(fs, opts);
    assert.match(
      r.actions.join("\n"),
      /created .*config\.toml \(config version 2, CRI plugin "io\.containerd\.grpc\.v1\.cri"\)/,
    );
    assert.equal(await exists(backupPath(opts.containerdConfig)), false, "nothing to back up");
    await uninstall(fs, opts);
    assert.deepEqual(await readdir(path.join(dir, "etc")), []);
  });

  it("writes through a config that is a symlink, which stays one", async () => {
    await writeFile(path.join(dir, "etc/real.toml"), v2);
    await symlink("real.toml", opts.containerdConfig);
    await install(fs, opts);
    assert.equal(await readlink(opts.containerdConfig), "real.toml");
    assert.match(await readFile(path.join(dir, "etc/real.toml"), "utf8"), /# BEGIN kata-ts/);
    await uninstall(fs, opts);
    assert.equal(await readFile(path.join(dir, "etc/real.toml"), "utf8"), v2);
    assert.equal(await readlink(opts.containerdConfig), "real.toml");
  });

  it("keeps a backup that is not the restored file, and refuses a broken block before removing links", async () => {
    await install(fs, opts); // creates the config
    await writeFile(backupPath(opts.containerdConfig), "the user's own\n");
    const u = await uninstall(fs, opts);
    assert.match(u.warnings.join("\n"), /kept .*config\.toml\.kata-ts\.bak: it differs/);
    assert.equal(await readFile(backupPath(opts.containerdConfig), "utf8"), "the user's own\n");
    await install(fs, { ...opts, write: false });
    await writeFile(opts.containerdConfig, "version = 2\n# BEGIN kata-ts\n");
    await rejectsWith(uninstall(fs, opts), /without a "# END kata-ts" line/);
    assert.equal((await readdir(path.join(dir, "bin"))).length, 2, "links still there");
  });

  it("refuses a --bin-dir that is not a directory", async () => {
    await rejectsWith(install(fs, { ...opts, binDir: path.join(dir, "nope") }), /--bin-dir .*nope is not a directory/);
  });
});

describe("runInstall (the command)", () => {
  it("without --write prints the entries for the config's version on stdout, what it did on stderr", async () => {
    await writeFile(opts.containerdConfig, "[plugins.cri]\n");
    let out = "";
    let err = "";
    const deps = {
      fs,
      installRoot: opts.installRoot,
      stdout: (t: string) => (out += t),
      stderr: (t: string) => (err += t),
    };
    await runInstall(deps, { binDir: opts.binDir, containerdConfig: opts.containerdConfig });
    assert.match(
      out,
      /^\[plugins\.cri\.containerd\.runtimes\.kata-ts\]\n {2}runtime_type = "io\.containerd\.kata-ts\.v2"/,
    );
    assert.doesNotMatch(out, /ConfigPath/);
    assert.match(err, /linked .*containerd-shim-kata-ts-v2/);
    assert.match(err, /add these lines to .*config\.toml \(or run again with --write\)/);
    out = "";
    err = "";
    await runInstall(deps, { binDir: opts.binDir, containerdConfig: opts.containerdConfig, write: true });
    assert.equal(out, "");
    assert.match(err, /restart containerd to load it: systemctl restart containerd/);
    await writeFile(opts.containerdConfig, "[broken\n");
    await rm(path.join(dir, "bin/kata-ts"));
    await assert.rejects(
      runInstall(deps, { binDir: opts.binDir, containerdConfig: opts.containerdConfig }),
      /not valid TOML/,
    );
    assert.equal(await exists(path.join(dir, "bin/kata-ts")), false, "refused before any link");
    await assert.rejects(
      runInstall(deps, { binDir: opts.binDir, containerdConfig: opts.containerdConfig, uninstall: true, write: true }),
      (e: unknown) => isKataError(e, Code.InvalidArgument),
    );
  });
});
