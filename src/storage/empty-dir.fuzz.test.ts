// Property-based tests of the emptyDir helpers: sizes parse to safe byte counts or nothing, a volume name
// from any source path is one path component, and the planned guest path stays one level under its
// directory whatever the host mount says.

import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { guestEphemeralDir, guestLocalVolumePath } from "../protocol/guest-paths.js";
import { fuzzParams } from "../../test/helpers/fuzz.js";
import { emptyDirVolume, isValidVolumeName, k8sEmptyDir, parseSizeBytes, planEmptyDir } from "./empty-dir.js";

const size = fc.oneof(
  fc
    .tuple(
      fc.oneof(
        fc.nat({ max: 4096 }).map(String),
        fc.string({ unit: fc.constantFrom(...Array.from("0123456789")), maxLength: 40 }),
      ),
      fc.constantFrom("", "k", "M", "Gi", "TiB", "b", "x", "MiB"),
    )
    .map(([n, u]) => n + u),
  fc.string({ maxLength: 8 }),
);

describe("emptyDir helpers (fuzz)", () => {
  it("parseSizeBytes gives a safe byte count or nothing", () => {
    fc.assert(
      fc.property(size, (s) => {
        const n = parseSizeBytes(s);

        assert.ok(n === undefined || (Number.isSafeInteger(n) && n >= 0), `${s} -> ${String(n)}`);
      }),
      fuzzParams(2000),
    );
  });

  it("an emptyDir volume is one path component, and its guest path one level under its directory", () => {
    const element = fc.string({ unit: fc.constantFrom("a", ".", "-", "é", "\u0000"), maxLength: 3 });
    const source = fc
      .array(fc.oneof(element, fc.constant(k8sEmptyDir)), { maxLength: 5 })
      .map((parts) => `/${parts.join("/")}`);
    const hostMount = fc.option(
      fc.record({
        source: fc.constant("none"),
        mountPoint: fc.constant("/v"),
        fstype: fc.constantFrom("tmpfs", "hugetlbfs", "ext4"),
        options: fc.array(
          fc.oneof(
            fc.constantFrom("size=1G", "mode=0700", "pagesize=2M"),
            size.map((s) => `pagesize=${s}`),
          ),
          { maxLength: 3 },
        ),
        propagation: fc.constant([]),
      }),
      { nil: undefined },
    );

    fc.assert(
      fc.property(source, hostMount, fc.constantFrom(0, 1000), (src, mount, gid) => {
        const volume = emptyDirVolume(src);
        if (volume === undefined || !isValidVolumeName(volume) || volume.includes("\0")) return;
        assert.ok(!volume.includes("/"));

        const plan = planEmptyDir({ sandboxId: "sb1", volume, hostMount: mount, gid });

        if ("error" in plan) {
          assert.equal(mount?.fstype, "hugetlbfs", plan.error);
          return;
        }
        const dir = path.posix.dirname(plan.guestPath);
        assert.ok(dir === guestEphemeralDir || plan.guestPath === guestLocalVolumePath("sb1", volume), plan.guestPath);
        assert.equal(path.posix.basename(plan.guestPath), volume);
        for (const o of plan.storage.options ?? []) {
          const bytes = /^pagesize=(.*)$/.exec(o)?.[1];
          if (bytes !== undefined) assert.ok(Number.isSafeInteger(Number(bytes)) && Number(bytes) > 0, o);
        }
      }),
      fuzzParams(2000),
    );
  });
});
