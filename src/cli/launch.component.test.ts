// bin/launch.sh's choice between the host's startup snapshot and the ES module, run for real (sh and
// this node) on a copy of bin/ in a temporary install whose "ES module" and tiny blob print how they
// were started.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { ignoreErrno } from "../base/errors.js";
import { hostBlobKeyRelPath, hostBlobRelPath } from "./host-snapshot.js";
import { installRoot } from "./paths.js";

const exec = promisify(execFile);

interface Started {
  readonly code: number;
  readonly from?: "blob" | "module";
  readonly args?: string[];
}

async function start(file: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Started> {
  // node from this test's own directory first: the key names the node the launcher finds on PATH.
  const PATH = `${path.dirname(process.execPath)}:${process.env["PATH"] ?? ""}`;
  try {
    const r = await exec(file, args, { env: { ...process.env, PATH, ...env } });
    return { code: 0, ...(JSON.parse(r.stdout) as { from: "blob" | "module"; args: string[] }) };
  } catch (e) {
    return { code: (e as { code: number }).code };
  }
}

describe("bin/launch.sh", () => {
  let dir: string;
  let root: string;
  let cli: string;
  const blob = (): string => path.join(root, hostBlobRelPath);
  const key = (): string => path.join(root, hostBlobKeyRelPath);
  const rightKey = async (): Promise<string> => {
    const PATH = `${path.dirname(process.execPath)}:${process.env["PATH"] ?? ""}`;
    const r = await exec(
      "/bin/sh",
      ["-c", '. "$0" && snapshot_key "$(command -v node)" "$1"', path.join(root, "bin/launch.sh"), root],
      { env: { ...process.env, PATH } },
    );
    return r.stdout;
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-launch-"));
    root = path.join(dir, "kata-ts");
    await mkdir(path.join(root, "bin"), { recursive: true });
    await mkdir(path.join(root, "dist/src/cli"), { recursive: true });
    await mkdir(path.dirname(blob()), { recursive: true });
    for (const f of ["launch.sh", "kata-ts"])
      await copyFile(path.join(installRoot, "bin", f), path.join(root, "bin", f));
    cli = path.join(root, "bin/kata-ts");
    await exec("chmod", ["+x", cli]);
    await writeFile(
      path.join(root, "dist/src/cli/kata-ts-main.js"),
      'console.log(JSON.stringify({ from: "module", args: process.argv.slice(2) }));\n',
    );
    const snap = path.join(dir, "snap.cjs");
    await writeFile(
      snap,
      "require('node:v8').startupSnapshot.setDeserializeMainFunction(() =>\n" +
        "  console.log(JSON.stringify({ from: 'blob', args: process.argv.slice(1) })));\n",
    );
    await exec(process.execPath, ["--snapshot-blob", blob(), "--build-snapshot", snap], { cwd: dir });
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("starts the ES module when the blob has no key, with the arguments as given", async () => {
    await rm(key(), { force: true });
    const s = await start(cli, ["--root", "/r", "run", "a b"]);
    assert.deepEqual(s, { code: 0, from: "module", args: ["--root", "/r", "run", "a b"] });
  });

  it("starts the ES module when the blob's key names another node, CPU or directory", async () => {
    await writeFile(key(), (await rightKey()).replace(root, "/elsewhere"));
    assert.deepEqual(await start(cli, ["state", "x"]), { code: 0, from: "module", args: ["state", "x"] });
  });

  it("starts the blob's kata-ts entry when the key is this host's", async () => {
    await writeFile(key(), await rightKey());
    assert.deepEqual(await start(cli, ["state", "a b"]), { code: 0, from: "blob", args: ["kata-ts", "state", "a b"] });
  });

  it("KATA_TS_NO_SNAPSHOT starts the ES module even then", async () => {
    await writeFile(key(), await rightKey());
    assert.deepEqual(await start(cli, ["list"], { KATA_TS_NO_SNAPSHOT: "1" }), {
      code: 0,
      from: "module",
      args: ["list"],
    });
  });

  it("finds its install through a link elsewhere (kata-ts install's, npm's)", async () => {
    const link = path.join(dir, "kata-ts-link");
    await symlink(cli, link);
    assert.deepEqual(await start(link, ["--version"]), { code: 0, from: "blob", args: ["kata-ts", "--version"] });
  });

  it("starts the ES module when there is no blob", async () => {
    await rm(blob(), { force: true });
    assert.deepEqual(await start(cli, ["list"]), { code: 0, from: "module", args: ["list"] });
  });
});

describe("this build's startup snapshot", () => {
  it("exists and has this host's key, so bin/kata-ts starts from it", async (t) => {
    const real = path.join(installRoot, hostBlobKeyRelPath);
    const want = await readFile(real, "utf8").catch(ignoreErrno("ENOENT"));
    if (want === undefined) {
      // npm run build writes it; a build whose snapshot failed said why and runs from ES modules.
      if (process.env["KATA_TS_REQUIRE"] === "all") assert.fail(`no ${real}: the build made no startup snapshot`);
      t.skip(`no ${real}: the build made no startup snapshot`);
      return;
    }
    const PATH = `${path.dirname(process.execPath)}:${process.env["PATH"] ?? ""}`;
    const got = await exec(
      "/bin/sh",
      ["-c", '. "$0" && snapshot_key "$(command -v node)" "$1"', path.join(installRoot, "bin/launch.sh"), installRoot],
      { env: { ...process.env, PATH } },
    );
    assert.equal(got.stdout, want);
    const v = await exec(path.join(installRoot, "bin/kata-ts"), ["--version"], { env: { ...process.env, PATH } });
    assert.match(v.stdout, /^kata-ts version /);
  });
});
