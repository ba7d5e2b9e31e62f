import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compileGlob, isCleanAbsolutePath, matchesAnyGlob } from "./glob.js";

function matches(pattern: string, p: string): boolean {
  return matchesAnyGlob([pattern], p);
}

describe("compileGlob", () => {
  it("matches literal paths exactly", () => {
    assert.ok(matches("/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-system-x86_64"));
    assert.ok(!matches("/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-system-x86_64x"));
    assert.ok(!matches("/usr/bin/qemu", "/usr/bin/qemu/"));
  });

  it("lets * and ? match within one path component only", () => {
    assert.ok(matches("/usr/bin/qemu-*", "/usr/bin/qemu-system-x86_64"));
    assert.ok(matches("/usr/bin/qemu-?vm", "/usr/bin/qemu-kvm"));
    assert.ok(!matches("/usr/*", "/usr/bin/qemu"));
    assert.ok(!matches("/usr/bin/*", "/usr/bin/../../bin/sh"));
    assert.ok(!matches("/a?b", "/a/b"));
  });

  it("supports bracket classes, ranges and negation, never matching /", () => {
    assert.ok(matches("/k/vmlinux-[0-9]", "/k/vmlinux-6"));
    assert.ok(!matches("/k/vmlinux-[0-9]", "/k/vmlinux-x"));
    assert.ok(matches("/k/[!a]", "/k/b"));
    assert.ok(matches("/k/[^a]", "/k/b"));
    assert.ok(!matches("/k/[!a]", "/k/a"));
    assert.ok(!matches("/k[!a]x", "/k/x"));
    assert.ok(matches("/k/[]]", "/k/]"));
    assert.ok(matches("/k/[a-]", "/k/-"));
  });

  it("treats regex characters and escaped glob characters literally", () => {
    assert.ok(matches("/k/a.b+(c)", "/k/a.b+(c)"));
    assert.ok(!matches("/k/a.b", "/k/axb"));
    assert.ok(matches("/k/\\*", "/k/*"));
    assert.ok(!matches("/k/\\*", "/k/x"));
  });

  it("reports malformed patterns, which then match nothing", () => {
    assert.deepEqual(compileGlob("/k/[a-"), { ok: false, error: "unterminated [" });
    assert.deepEqual(compileGlob("/k/\\"), { ok: false, error: "trailing backslash" });
    assert.deepEqual(compileGlob("/k/[z-a]"), { ok: false, error: "invalid range z-a" });
    assert.ok(!matchesAnyGlob(["/k/[a-"], "/k/a"));
  });

  it("matches when any pattern of the list matches, and never for an empty list", () => {
    assert.ok(matchesAnyGlob(["/opt/*", "/usr/bin/qemu-*"], "/usr/bin/qemu-kvm"));
    assert.ok(!matchesAnyGlob([], "/usr/bin/qemu-kvm"));
  });
});

describe("isCleanAbsolutePath", () => {
  it("accepts normalized absolute paths only", () => {
    assert.ok(isCleanAbsolutePath("/usr/bin/qemu"));
    for (const p of ["usr/bin/qemu", "/usr/bin/../qemu", "/usr/./bin", "/usr//bin", "/usr/bin/", "/", "", "/a\0b"]) {
      assert.ok(!isCleanAbsolutePath(p), p);
    }
  });
});
