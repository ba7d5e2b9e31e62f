import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CpioEntry } from "./cpio.js";
import { guestPaths, planInitrd, type LayoutInputs } from "./layout.js";

const host = (sourcePath: string, sizeBytes = 10): { sourcePath: string; sizeBytes: number } => ({
  sourcePath,
  sizeBytes,
});

function inputs(over: Partial<LayoutInputs> = {}): LayoutInputs {
  return {
    initScript: "#!/bin/sh\n",
    inittab: "::sysinit:/bin/true\n",
    imageInfo: { kernelRelease: "6.1.0-56-amd64", kernelPackage: "linux-image-6.1.0-56-amd64", inputsHash: "abc" },
    modules: [
      { name: "virtio_ring", ...host("/k/virtio_ring.ko") },
      { name: "virtio", ...host("/k/virtio.ko") },
      { name: "virtio_console", ...host("/k/virtio_console.ko") },
    ],
    busybox: host("/usr/bin/busybox"),
    applets: ["[", "busybox", "sh", "mount"],
    crun: host("/usr/bin/crun"),
    node: host("/cache/node/sha/node"),
    libraries: [
      { guestPath: "/lib/x86_64-linux-gnu/libc.so.6", ...host("/usr/lib/x86_64-linux-gnu/libc.so.6") },
      { guestPath: "/lib64/ld-linux-x86-64.so.2", ...host("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2") },
    ],
    agentBundle: host("/repo/dist/agent/kata-ts-agent.mjs"),
    ...over,
  };
}

function byPath(entries: readonly CpioEntry[]): Map<string, CpioEntry> {
  return new Map(entries.map((e) => [e.path, e]));
}

function text(e: CpioEntry | undefined): string {
  assert.ok(e?.kind === "file" && e.source.kind === "bytes", `${e?.path ?? "entry"} is an inline file`);
  return Buffer.from(e.source.data).toString("utf8");
}

describe("planInitrd", () => {
  it("links every applet except busybox itself to the binary", () => {
    const m = byPath(planInitrd(inputs()));

    assert.deepEqual(m.get("/bin/sh"), { kind: "symlink", path: "/bin/sh", target: "busybox" });
    assert.deepEqual(m.get("/bin/["), { kind: "symlink", path: "/bin/[", target: "busybox" });
    assert.deepEqual(m.get("/bin/busybox"), {
      kind: "file",
      path: "/bin/busybox",
      mode: 0o755,
      source: { kind: "path", path: "/usr/bin/busybox", sizeBytes: 10 },
    });
    assert.deepEqual(m.get("/sbin/init"), { kind: "symlink", path: "/sbin/init", target: "/bin/busybox" });
  });

  it("has /dev/console and /dev/null so /init starts with valid fds", () => {
    const m = byPath(planInitrd(inputs()));

    assert.deepEqual(m.get("/dev/console"), { kind: "chardev", path: "/dev/console", mode: 0o600, major: 5, minor: 1 });
    assert.deepEqual(m.get("/dev/null"), { kind: "chardev", path: "/dev/null", mode: 0o666, major: 1, minor: 3 });
  });

  it("writes the modules and their load order", () => {
    const m = byPath(planInitrd(inputs()));

    assert.equal(text(m.get(guestPaths.modulesOrder)), "virtio_ring\nvirtio\nvirtio_console\n");
    assert.equal(m.get("/lib/modules/virtio_console.ko")?.kind, "file");
  });

  it("writes /init executable, the inittab and the image info", () => {
    const m = byPath(planInitrd(inputs()));

    assert.equal(text(m.get("/init")), "#!/bin/sh\n");
    const init = m.get("/init");
    assert.equal(init?.kind === "file" ? init.mode : undefined, 0o755);
    assert.equal(text(m.get("/etc/inittab")), "::sysinit:/bin/true\n");
    assert.deepEqual(JSON.parse(text(m.get("/etc/kata-ts-image.json"))), {
      kernelRelease: "6.1.0-56-amd64",
      kernelPackage: "linux-image-6.1.0-56-amd64",
      inputsHash: "abc",
    });
  });

  it("places binaries, libraries and the agent at their guest paths", () => {
    const m = byPath(planInitrd(inputs()));

    const source = (p: string): string | undefined => {
      const e = m.get(p);
      return e?.kind === "file" && e.source.kind === "path" ? e.source.path : undefined;
    };
    assert.equal(source("/usr/bin/node"), "/cache/node/sha/node");
    assert.equal(source("/usr/bin/crun"), "/usr/bin/crun");
    assert.equal(source("/lib64/ld-linux-x86-64.so.2"), "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
    assert.equal(source("/opt/kata-ts/kata-ts-agent.mjs"), "/repo/dist/agent/kata-ts-agent.mjs");
  });

  it("creates the base directories and every parent directory", () => {
    const m = byPath(planInitrd(inputs()));

    for (const d of [
      "/proc",
      "/sys",
      "/sys/fs/cgroup",
      "/dev",
      "/run",
      "/tmp",
      "/mnt",
      "/root",
      "/newroot",
      "/etc",
      "/var",
    ]) {
      assert.equal(m.get(d)?.kind, "dir", d);
    }
    for (const d of ["/lib", "/lib/x86_64-linux-gnu", "/lib64", "/usr", "/usr/bin", "/opt", "/opt/kata-ts", "/sbin"]) {
      assert.equal(m.get(d)?.kind, "dir", d);
    }
    assert.deepEqual(m.get("/tmp"), { kind: "dir", path: "/tmp", mode: 0o1777 });
  });

  it("shares a library two binaries need, but rejects one path with two sources", () => {
    const libc = { guestPath: "/lib/x86_64-linux-gnu/libc.so.6", ...host("/usr/lib/x86_64-linux-gnu/libc.so.6") };

    assert.doesNotThrow(() => planInitrd(inputs({ libraries: [libc, libc] })));
    assert.throws(
      () => planInitrd(inputs({ libraries: [libc, { ...libc, sourcePath: "/other/libc.so.6" }] })),
      /\/lib\/x86_64-linux-gnu\/libc.so.6 is claimed twice/,
    );
  });

  it("rejects an applet name that would escape /bin", () => {
    assert.throws(() => planInitrd(inputs({ applets: ["../init"] })), /bad busybox applet name/);
  });
});
