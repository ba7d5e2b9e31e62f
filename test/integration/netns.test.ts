// Real network namespaces through iproute2 and nsenter (root). Every name carries this process's pid, so
// the leak check sees only what these tests made, even while other suites use namespaces too.

import assert from "node:assert/strict";
import { readdir, rm, writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { requires } from "../helpers/requires.js";
import { Code, errnoOf, isKataError } from "../../src/base/errors.js";
import { NodeProcessRunner, type RunResult } from "../../src/platform/process.js";
import { NetnsManager, netnsInode, netnsName, netnsRunDir } from "../../src/network/netns.js";

const skip = requires("netns");
const prefix = netnsName(`t${process.pid}-`);

async function leftovers(): Promise<string[]> {
  try {
    return (await readdir(netnsRunDir)).filter((n) => n.startsWith(prefix));
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return [];
    throw e;
  }
}

describe("NetnsManager", { skip, timeout: 60_000 }, () => {
  // A test is its own composition root: it builds the real runner.
  const runner = new NodeProcessRunner();
  const netns = new NetnsManager({ runner });

  after(async () => {
    for (const name of await leftovers()) await netns.remove(name);
  });

  it("creates a namespace that programs can enter, then removes it", async () => {
    const name = netnsName(`t${process.pid}-create`);

    const nsPath = await netns.create(name);
    let inode: number, inside: RunResult;
    try {
      inode = await netnsInode(nsPath);
      inside = await netns.run(nsPath, "readlink", ["/proc/self/ns/net"]);
    } finally {
      await netns.remove(name);
    }

    assert.equal(nsPath, `/var/run/netns/${name}`);
    assert.equal(inside.code, 0, inside.stderr);
    assert.equal(inside.stdout.trim(), `net:[${String(inode)}]`);
    assert.notEqual(inode, await netnsInode("/proc/self/ns/net"));
    assert.deepEqual(await leftovers(), []);
  });

  it("refuses to create a name that exists, and removes idempotently", async () => {
    const name = netnsName(`t${process.pid}-twice`);
    await netns.create(name);

    await assert.rejects(netns.create(name), (e: unknown) => isKataError(e, Code.AlreadyExists));
    await netns.remove(name);
    await netns.remove(name);

    assert.deepEqual(await leftovers(), []);
  });

  it("accepts a namespace it created as joinable", async () => {
    const name = netnsName(`t${process.pid}-join`);
    const nsPath = await netns.create(name);

    try {
      await netns.checkJoinable(nsPath);
    } finally {
      await netns.remove(name);
    }
  });

  it("refuses the host's network namespace as host networking, also through a bind mount", async () => {
    // `ip netns attach` bind-mounts our own (the host's) namespace under /var/run/netns.
    const alias = netnsName(`t${String(process.pid)}-host`);
    const attached = await runner.run("ip", ["netns", "attach", alias, String(process.pid)]);
    assert.equal(attached.code, 0, attached.stderr);

    try {
      for (const p of ["/proc/self/ns/net", `/proc/${String(process.pid)}/ns/net`, `/var/run/netns/${alias}`]) {
        await assert.rejects(
          netns.checkJoinable(p),
          (e: unknown) =>
            isKataError(e, Code.FailedPrecondition) && e.message.startsWith("host networking requested, not supported"),
          p,
        );
      }
    } finally {
      await netns.remove(alias);
    }
  });

  it("refuses PID 1's network namespace (as host networking, or as not accessible where /proc/1 is closed)", async () => {
    await assert.rejects(netns.checkJoinable("/proc/1/ns/net"), (e: unknown) =>
      isKataError(e, Code.FailedPrecondition),
    );
  });

  it("refuses a regular file, a namespace of another type and a missing path", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kata-ts-netns-"));
    try {
      const file = join(dir, "not-a-netns");
      await writeFile(file, "");

      await assert.rejects(netns.checkJoinable(file), (e: unknown) => isKataError(e, Code.InvalidArgument));
      await assert.rejects(
        netns.checkJoinable(`/proc/${String(process.pid)}/ns/uts`),
        (e: unknown) => isKataError(e, Code.InvalidArgument) && e.message.includes("not a network namespace"),
      );
      await assert.rejects(netns.checkJoinable(join(dir, "missing")), (e: unknown) => isKataError(e, Code.NotFound));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("removes a half-made namespace when create is cancelled", async () => {
    const name = netnsName(`t${process.pid}-abort`);
    const ctl = new AbortController();
    ctl.abort();

    await assert.rejects(netns.create(name, ctl.signal), (e: unknown) => isKataError(e, Code.Cancelled));

    assert.deepEqual(await leftovers(), []);
  });

  it("leaves no namespace behind", async () => {
    assert.deepEqual(await leftovers(), []);
  });
});
