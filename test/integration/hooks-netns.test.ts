// OCI hooks run inside a sandbox's network namespace: a real namespace (iproute2) and a real /bin/sh
// hook that reports, from inside, which namespace it ran in and what it got on stdin.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NetnsManager, netnsInode, netnsName } from "../../src/network/netns.js";
import type { State } from "../../src/oci/spec.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { runHooks } from "../../src/sandbox/hooks.js";
import { requires } from "../helpers/requires.js";

const state: State = { ociVersion: "1.0.2", id: "c1", status: "creating", pid: 4242, bundle: "/run/bundles/c1" };
const deps = { runner: new NodeProcessRunner() };

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kata-ts-hooks-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function script(name: string, body: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, `#!/bin/sh\n${body}\n`);
  await chmod(p, 0o755);
  return p;
}

describe("runHooks in a network namespace", { skip: requires("netns"), timeout: 30_000 }, () => {
  it("runs the hook inside the namespace", async () => {
    const netns = new NetnsManager(deps);
    const name = netnsName(`t${String(process.pid)}-hook`);
    const nsPath = await netns.create(name);
    try {
      const out = join(dir, "hook-netns");
      const hook = await script("netns.sh", `/bin/readlink /proc/self/ns/net > ${out}; /bin/cat > ${out}.stdin`);

      await runHooks(deps, "prestart", [{ path: hook }], state, { netnsPath: nsPath });

      assert.equal((await readFile(out, "utf8")).trim(), `net:[${String(await netnsInode(nsPath))}]`);
      assert.deepEqual(JSON.parse(await readFile(`${out}.stdin`, "utf8")), state);
    } finally {
      await netns.remove(name);
    }
    assert.equal(existsSync(nsPath), false);
  });
});
