// Property-based tests of container storage planning: any mount list, with any inspection results for the
// sources the applier is told to inspect (as inspectSources gathers them), plans or throws one
// INVALID_ARGUMENT; a plan binds only real host files and directories outside /proc and /sys, under names
// that are one path component each and never shared by two mounts, and every guest mount points at
// something the plan provides.

import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Code } from "../base/errors.js";
import type { Mount } from "../oci/spec.js";
import type { MountEntry } from "../platform/mountinfo.js";
import { guestSharedDir, guestSharedPath, guestShmDir } from "../protocol/guest-paths.js";
import { fuzzParams, onlyKataError } from "../../test/helpers/fuzz.js";
import { planContainerStorage, sourcesToInspect, type SourceInfo } from "./plan.js";

const pod = "/var/lib/kubelet/pods/3f1c/volumes/kubernetes.io~empty-dir";
const name = fc.string({ unit: fc.constantFrom("a", "b", ".", "/", "-", "\u0000", "é"), maxLength: 5 });

const hostPath = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(`${pod}/vol`, `${pod}/cache`, "/host/data", "/host/file", "/dev/shm") },
  fc.constantFrom(`${pod}/vol/`, `${pod}/.`, `${pod}/..`, `${pod}/`, `${pod}/a/b`, "/elsewhere/vol"),
  fc.constantFrom("/host/data", "/host/file", "/proc/1/ns", "/proc", "/sys/fs", "/dev/shm", "/dev/null", "/"),
  fc.constantFrom("relative", "", "/host//data", "/host/data/../../etc"),
  name.map((n) => `/host/${n}`),
  name.map((n) => `${pod}/${n}`),
);
const destination = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom("/data", "/cache", "/etc/hosts", "/dev/shm", "/dev/null", "/dev/x", "/") },
  fc.constantFrom("/a/.", "/a/..", "/a/../b", "rel", "/a//b/"),
  name.map((n) => `/${n}`),
);
const mount: fc.Arbitrary<Mount> = fc.record(
  {
    destination,
    type: fc.oneof({ weight: 8, arbitrary: fc.constant("bind") }, fc.constantFrom("none", "proc", "tmpfs", "overlay")),
    source: hostPath,
    options: fc.subarray(["rbind", "bind", "ro", "rw", "nosuid", "nodev", "noexec", "rprivate"]),
  },
  { requiredKeys: ["destination"] },
);

/** What lstat/realpath may say about a path; a symlink resolves to one of a few places, or nowhere. */
const info = (p: string): fc.Arbitrary<SourceInfo> =>
  fc.oneof(
    fc.record({
      kind: fc.oneof({ weight: 8, arbitrary: fc.constantFrom("dir", "file") }, fc.constantFrom("missing", "other")),
      gid: fc.constantFrom(0, 1000),
      // realpath of an entry under a symlinked directory differs from the path itself.
      realPath: fc.oneof(
        { weight: 4, arbitrary: fc.constant(p) },
        hostPath.filter((h) => h.startsWith("/")),
      ),
    }),
    fc.record({
      kind: fc.constant<SourceInfo["kind"]>("symlink"),
      gid: fc.constant(0),
      realPath: fc.constantFrom("", "/proc/self/root", `${pod}/vol`, "/elsewhere/vol", "/host/data", "/dev/sda"),
    }),
  );

/** Inspection results exactly where inspectSources would look: each source, then each symlink's target. */
function inspected(mounts: readonly Mount[]): fc.Arbitrary<Map<string, SourceInfo>> {
  const paths = sourcesToInspect(mounts);
  return fc.tuple(...paths.map((p) => info(p))).chain((infos) => {
    const map = new Map<string, SourceInfo>(
      paths.map((p, i) => [p, infos[i] ?? { kind: "missing", gid: 0, realPath: p }]),
    );
    const targets = [...new Set(infos.flatMap((i) => (i.kind === "symlink" && i.realPath !== "" ? [i.realPath] : [])))];
    const fresh = targets.filter((t) => !map.has(t));
    // realpath succeeded, so the target exists, is no symlink, and is its own real path.
    const target = (t: string): fc.Arbitrary<SourceInfo> =>
      fc.record({ kind: fc.constantFrom("dir", "file", "other"), gid: fc.constant(0), realPath: fc.constant(t) });
    return fc.tuple(...fresh.map(target)).map((ts) => {
      fresh.forEach((t, i) => map.set(t, ts[i] ?? { kind: "dir", gid: 0, realPath: t }));
      return map;
    });
  });
}

const procMount: fc.Arbitrary<MountEntry> = fc.record({
  source: fc.constant("none"),
  mountPoint: fc.constantFrom(`${pod}/vol`, "/elsewhere/vol", "/host/data"),
  fstype: fc.constantFrom("tmpfs", "hugetlbfs", "ext4"),
  options: fc.subarray(["rw", "size=64m", "mode=1777", "pagesize=2M", "pagesize=0", "pagesize=huge"]),
  propagation: fc.constant([]),
});

const planInput = fc
  .record({
    mounts: fc.array(mount, { maxLength: 4 }),
    procMounts: fc.array(procMount, { maxLength: 3 }),
    isSandboxContainer: fc.boolean(),
  })
  .chain((r) => inspected(r.mounts).map((sources) => ({ ...r, sources, sandboxId: "sb1", containerId: "c1" })));

describe("planContainerStorage (fuzz)", () => {
  it("plans or refuses with one INVALID_ARGUMENT; binds are real, outside /proc and /sys, uniquely named", () => {
    fc.assert(
      fc.property(planInput, (input) => {
        const r = onlyKataError(() => planContainerStorage(input));

        if (!r.ok) {
          assert.equal(r.error.code, Code.InvalidArgument, r.error.message);
          assert.match(r.error.message, /^container c1: invalid mounts: mounts\[\d+\]/);
          return;
        }
        const { mounts, storages, binds } = r.value;
        const relatives = binds.map((b) => b.relative);
        assert.equal(new Set(relatives).size, relatives.length, "two mounts never share a name");
        for (const b of binds) {
          // One path component: what the host creates under mounts/ and the guest sees under guestSharedDir.
          // Below the container's own volumes/ dir, one path component: never a rootfs, never inside another.
          assert.match(b.relative, /^c1\/volumes\/[0-9a-f]{16}-[^/\0]*$/, JSON.stringify(b.relative));
          assert.equal(path.posix.dirname(guestSharedPath(b.relative)), `${guestSharedDir}/c1/volumes`);
          assert.ok(b.source.startsWith("/") && !/^\/(proc|sys)(\/|$)/.test(b.source), `bind source ${b.source}`);
          const resolvedHere = [...input.sources.values()].filter((i) => i.realPath === b.source);
          const kindOf = (i: SourceInfo): string | undefined =>
            i.kind === "symlink" ? input.sources.get(i.realPath)?.kind : i.kind;
          assert.ok(
            resolvedHere.some((i) => kindOf(i) === b.kind),
            `${b.source} is bound as what it is`,
          );
        }
        assert.ok(mounts.length <= input.mounts.length);
        const storagePoints = new Set(storages.map((s) => s.mountPoint));
        assert.equal(storagePoints.size, storages.length, "one storage per emptyDir volume");
        if (input.isSandboxContainer) assert.equal(storages.length, 0, "no emptyDir for the sandbox container");
        for (const m of mounts) {
          assert.ok(input.mounts.some((i) => i.destination === m.destination));
          if (m.type !== "bind") continue;
          const s = m.source ?? "";
          const provided =
            s === guestShmDir || storagePoints.has(s) || relatives.some((rel) => guestSharedPath(rel) === s);
          assert.ok(provided, `guest mount source ${s} comes from the plan`);
          assert.ok(!s.includes("\0") && !s.split("/").includes(".."), `guest path ${JSON.stringify(s)}`);
        }
      }),
      // Cheap runs, and most refuse early: many of them are needed to reach the emptyDir rules.
      fuzzParams(3000),
    );
  });
});
