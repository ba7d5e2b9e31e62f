import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { kataError } from "../../test/helpers/fakes.js";
import { StateStore, runDirScope, type PersistedSandbox } from "./persist.js";

let tmp = "";
let root = "";

function sandbox(id: string, extra: Partial<PersistedSandbox> = {}): PersistedSandbox {
  return {
    version: 1,
    id,
    servicePid: 4242,
    socket: `/run/kata-ts/sbs/${id}/shim.sock`,
    createdAt: "2026-01-02T03:04:05.000Z",
    containers: [
      {
        id,
        bundle: `/bundles/${id}`,
        type: "sandbox",
        status: "running",
        createdAt: "2026-01-02T03:04:05.000Z",
        annotations: { "io.kubernetes.cri.container-type": "sandbox" },
      },
    ],
    ...extra,
  };
}

/** Writes `text` as the state file of sandbox `id`, as if something else had put it there. */
async function plantState(id: string, text: string): Promise<string> {
  const dir = path.join(root, "sbs", id);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, "state.json");
  await writeFile(file, text);
  return file;
}

/** Every path under `dir`, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.sort();
}

describe("StateStore", () => {
  beforeEach(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), "kata-ts-persist-"));
    root = path.join(tmp, "root");
  });
  afterEach(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  describe("save and load", () => {
    it("loads back exactly what was saved", async () => {
      const store = new StateStore(root);
      const s = sandbox("sb1", { vmPid: 77, netns: { path: "/var/run/netns/kata-sb1", created: true } });

      await store.save(s);
      const loaded = await store.load("sb1");

      assert.deepEqual(loaded, s);
    });

    it("replaces the previous state and leaves no temporary file behind", async () => {
      const store = new StateStore(root);
      await store.save(sandbox("sb1"));

      await store.save(sandbox("sb1", { vmPid: 99 }));

      assert.equal((await store.load("sb1"))?.vmPid, 99);
      assert.deepEqual(await readdir(store.sandboxDir("sb1")), ["state.json"]);
    });

    it("names the state file when a save fails, and leaves no temporary file behind", async () => {
      const store = new StateStore(root);
      const file = path.join(store.sandboxDir("sb1"), "state.json");
      // rename(2) of the new state over a non-empty directory fails.
      await mkdir(path.join(file, "x"), { recursive: true });

      await assert.rejects(store.save(sandbox("sb1")), kataError(Code.Internal, `save state ${file}`));

      assert.deepEqual(await readdir(store.sandboxDir("sb1")), ["state.json"]);
    });

    it("keeps the state private to its owner", async () => {
      const store = new StateStore(root);

      await store.save(sandbox("sb1"));

      assert.equal((await stat(path.join(store.sandboxDir("sb1"), "state.json"))).mode & 0o777, 0o600);
      assert.equal((await stat(store.sandboxDir("sb1"))).mode & 0o777, 0o700);
    });

    it("lets two concurrent saves of one sandbox both succeed and leaves one of them whole", async () => {
      const store = new StateStore(root);
      const a = sandbox("sb1", { vmPid: 1 });
      const b = sandbox("sb1", { vmPid: 2 });

      await Promise.all([store.save(a), store.save(b)]);

      const loaded = await store.load("sb1");
      assert.ok(loaded?.vmPid === 1 || loaded?.vmPid === 2);
      assert.deepEqual(loaded, loaded.vmPid === 1 ? a : b);
    });

    it("returns undefined for a sandbox that was never saved", async () => {
      const store = new StateStore(root);

      const loaded = await store.load("nosuch");

      assert.equal(loaded, undefined);
    });

    it("refuses a state file that is not JSON with INTERNAL naming the file", async () => {
      const file = await plantState("sb1", '{"version": 1, "id": "sb1",');
      const store = new StateStore(root);

      await assert.rejects(store.load("sb1"), kataError(Code.Internal, `${file}: not valid JSON`));
    });

    it("refuses JSON that is not a kata-ts state with INTERNAL naming the file", async () => {
      const file = await plantState("sb1", JSON.stringify({ ociVersion: "1.0.2", id: "sb1", status: "running" }));
      const store = new StateStore(root);

      await assert.rejects(store.load("sb1"), kataError(Code.Internal, file, "not a kata-ts sandbox state"));
    });

    it("refuses a state file of another version", async () => {
      const file = await plantState("sb1", JSON.stringify({ ...sandbox("sb1"), version: 2 }));
      const store = new StateStore(root);

      await assert.rejects(store.load("sb1"), kataError(Code.Internal, file, "version 1"));
    });

    it("refuses a state file that names another sandbox", async () => {
      const file = await plantState("sb1", JSON.stringify(sandbox("sb2")));
      const store = new StateStore(root);

      await assert.rejects(store.load("sb1"), kataError(Code.Internal, file, "id sb1"));
    });

    it("refuses an oversize state file without reading it", async () => {
      const file = await plantState("sb1", "");
      await truncate(file, (4 << 20) + 1);
      const store = new StateStore(root);

      await assert.rejects(store.load("sb1"), kataError(Code.Internal, file, `${(4 << 20) + 1} bytes`));
    });

    it("reads a state file of exactly the size limit and then checks its content", async () => {
      const file = await plantState("sb1", "");
      await truncate(file, 4 << 20);
      const store = new StateStore(root);

      await assert.rejects(store.load("sb1"), kataError(Code.Internal, `${file}: not valid JSON`));
    });

    it("refuses a state file whose container id is not a valid id", async () => {
      const s = sandbox("sb1");
      await plantState("sb1", JSON.stringify({ ...s, containers: [{ ...s.containers[0], id: "../../etc" }] }));
      const store = new StateStore(root);

      await assert.rejects(store.load("sb1"), kataError(Code.InvalidArgument, "invalid container id", "../../etc"));
    });

    it("refuses a state file with a container entry that has no id with INTERNAL naming the file", async () => {
      const file = await plantState("sb1", JSON.stringify({ ...sandbox("sb1"), containers: [{ bundle: "/b" }] }));
      const store = new StateStore(root);

      await assert.rejects(store.load("sb1"), kataError(Code.Internal, file));
    });

    it("loads back a sandbox's cgroup, and refuses one whose paths are not clean and absolute", async () => {
      const store = new StateStore(root);
      const cgroup = {
        version: 1 as const,
        leaves: ["/sys/fs/cgroup/memory/k/pod1"],
        created: ["/sys/fs/cgroup/memory/k/pod1"],
        homes: ["/sys/fs/cgroup/memory"],
      };
      await store.save(sandbox("sb1", { cgroup }));
      assert.deepEqual((await store.load("sb1"))?.cgroup, cgroup);

      for (const bad of [
        { ...cgroup, created: ["/sys/fs/cgroup/memory/../../etc"] },
        { ...cgroup, created: ["relative/dir"] },
        { ...cgroup, leaves: ["/sys/fs/cgroup//memory"] },
        { ...cgroup, homes: ["/a\0b"] },
        { ...cgroup, version: 3 },
        { ...cgroup, created: "/sys/fs/cgroup/memory/k" },
      ]) {
        const file = await plantState("sb2", JSON.stringify(sandbox("sb2", { cgroup: bad as typeof cgroup })));
        await assert.rejects(store.load("sb2"), kataError(Code.Internal, file, "cgroup"), JSON.stringify(bad));
      }
    });

    it("lists saved sandboxes in order and forgets removed ones", async () => {
      const store = new StateStore(root);
      await store.save(sandbox("sb2"));
      await store.save(sandbox("sb1"));
      await store.save(sandbox("sb3"));

      await store.removeSandbox("sb2");

      assert.deepEqual(await store.sandboxIds(), ["sb1", "sb3"]);
      assert.equal(await store.load("sb2"), undefined);
    });

    it("lists no sandboxes when the root does not exist yet", async () => {
      const store = new StateStore(root);

      const ids = await store.sandboxIds();

      assert.deepEqual(ids, []);
    });
  });

  describe("container mapping", () => {
    it("maps a container to its sandbox until the mapping is removed", async () => {
      const store = new StateStore(root);

      await store.addMapping("c1", "sb1");
      const before = await store.sandboxOf("c1");
      await store.removeMapping("c1");
      const after = await store.sandboxOf("c1");

      assert.equal(before, "sb1");
      assert.equal(after, undefined);
      assert.deepEqual(await readdir(path.join(root, "containers-mapping")), []);
    });

    it("has no sandbox for a container never mapped", async () => {
      const store = new StateStore(root);

      const sid = await store.sandboxOf("c1");

      assert.equal(sid, undefined);
    });

    it("removes a mapping that does not exist without error", async () => {
      const store = new StateStore(root);

      await store.removeMapping("c1");

      assert.equal(await store.sandboxOf("c1"), undefined);
    });

    it("refuses a second mapping of one container with ALREADY_EXISTS and keeps the first", async () => {
      const store = new StateStore(root);
      await store.addMapping("c1", "sb1");

      await assert.rejects(store.addMapping("c1", "sb2"), kataError(Code.AlreadyExists, "container c1 already exists"));

      assert.equal(await store.sandboxOf("c1"), "sb1");
    });

    it("reports INTERNAL when a mapping directory holds two files", async () => {
      const store = new StateStore(root);
      await store.addMapping("c1", "sb1");
      await writeFile(path.join(root, "containers-mapping", "c1", "sb2"), "");

      await assert.rejects(store.sandboxOf("c1"), kataError(Code.Internal, "too many files (2)", "c1"));
    });

    it("refuses a mapping file that is not a valid sandbox id", async () => {
      const store = new StateStore(root);
      await mkdir(path.join(root, "containers-mapping", "c1"), { recursive: true });
      await writeFile(path.join(root, "containers-mapping", "c1", "-bad"), "");

      await assert.rejects(store.sandboxOf("c1"), kataError(Code.InvalidArgument, "invalid sandbox id"));
    });
  });

  describe("id checks", () => {
    const badIds = ["../escape", "a/b", "..", ".", "/abs", ""];

    for (const bad of badIds) {
      it(`refuses the id ${JSON.stringify(bad)} everywhere before touching the filesystem`, async () => {
        const store = new StateStore(root);
        const invalid = kataError(Code.InvalidArgument, "invalid");

        assert.throws(() => store.sandboxDir(bad), invalid);
        assert.throws(() => store.socketPath(bad), invalid);
        await assert.rejects(store.save(sandbox(bad)), invalid);
        await assert.rejects(store.load(bad), invalid);
        await assert.rejects(store.removeSandbox(bad), invalid);
        await assert.rejects(store.addMapping(bad, "sb1"), invalid);
        await assert.rejects(store.sandboxOf(bad), invalid);
        await assert.rejects(store.removeMapping(bad), invalid);

        assert.deepEqual(await tree(tmp), []);
      });
    }

    it("refuses an invalid sandbox id in addMapping before creating the mapping directory", async () => {
      const store = new StateStore(root);

      await assert.rejects(store.addMapping("c1", "../sb1"), kataError(Code.InvalidArgument, "invalid sandbox id"));

      assert.deepEqual(await tree(tmp), []);
      await store.addMapping("c1", "sb1");
      assert.equal(await store.sandboxOf("c1"), "sb1");
    });

    it("writes nothing outside its root for a save with a valid id", async () => {
      const store = new StateStore(root);

      await store.save(sandbox("sb1"));
      await store.addMapping("c1", "sb1");

      assert.deepEqual(await readdir(tmp), ["root"]);
      const saved: unknown = JSON.parse(await readFile(path.join(root, "sbs", "sb1", "state.json"), "utf8"));
      assert.deepEqual(saved, sandbox("sb1"));
    });
  });
});

describe("runDirScope", () => {
  it("is empty for the default root (names stay kata-ts-<id>) and a stable 8-hex tag for any other", () => {
    assert.equal(runDirScope("/run/kata-ts"), "");
    assert.equal(runDirScope("/run/kata-ts/"), "");
    assert.match(runDirScope("/tmp/a"), /^[0-9a-f]{8}$/);
    assert.equal(runDirScope("/tmp/a"), runDirScope("/tmp/./a"));
    assert.notEqual(runDirScope("/tmp/a"), runDirScope("/tmp/b"));
  });
});
