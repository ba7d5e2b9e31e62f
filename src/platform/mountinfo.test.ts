import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mountsUnder, parseMountInfo, parseProcMounts, unescapeMountPath } from "./mountinfo.js";

describe("mount tables", () => {
  it("decodes octal escapes in paths", () => {
    assert.equal(unescapeMountPath("/a\\040b\\011c\\134d"), "/a b\tc\\d");
  });

  it("parses /proc/mounts with an escaped space", () => {
    const text = "tmpfs /var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/my\\040vol tmpfs rw,size=10k 0 0\n";

    const e = parseProcMounts(text)[0];

    assert.ok(e);
    assert.equal(e.mountPoint, "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/my vol");
    assert.equal(e.fstype, "tmpfs");
    assert.deepEqual(e.options, ["rw", "size=10k"]);
  });

  it("parses mountinfo propagation fields and skips garbage", () => {
    const text = [
      "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue",
      "garbage",
      "40 36 0:5 / /run rw - tmpfs tmpfs rw",
    ].join("\n");

    const entries = parseMountInfo(text);

    const [first, second] = entries;
    assert.equal(entries.length, 2);
    assert.ok(first && second);
    assert.equal(first.mountPoint, "/mnt/a b");
    assert.deepEqual(first.propagation, ["master:1", "shared:2"]);
    assert.equal(first.fstype, "ext3");
    assert.equal(second.parentId, 36);
  });

  it("lists mounts under a directory deepest first, not siblings with the same prefix", () => {
    const entries = parseProcMounts("a /run/x tmpfs rw 0 0\nb /run/x/y/z tmpfs rw 0 0\nc /run/xy tmpfs rw 0 0\n");

    assert.deepEqual(mountsUnder(entries, "/run/x"), ["/run/x/y/z", "/run/x"]);
  });
});
