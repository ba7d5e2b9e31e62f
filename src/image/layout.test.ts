import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CpioEntry } from "./cpio.js";
import { guestPaths, planInitrd, planToolsDisk, type LayoutInputs } from "./layout.js";

const host = (sourcePath: string, sizeBytes = 10): { sourcePath: string; sizeBytes: number } => ({
  sourcePath,
  sizeBytes,
});

function inputs(over: Partial<LayoutInputs> = {}): LayoutInputs {
  return {
    initScript: "#!/bin/sh\n",
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
    agent: { start: "bundle" },
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
    assert.match(text(m.get("/etc/inittab")), /^::respawn:\/usr\/bin\/node \/opt\/kata-ts\/kata-ts-agent.mjs$/m);
    assert.deepEqual(JSON.parse(text(m.get("/etc/kata-ts-image.json"))), {
      kernelRelease: "6.1.0-56-amd64",
      kernelPackage: "linux-image-6.1.0-56-amd64",
      inputsHash: "abc",
    });
  });

  it("links node, crun and their libraries into the tools disk mount, and carries the agent itself", () => {
    const m = byPath(planInitrd(inputs()));

    for (const p of [
      "/usr/bin/node",
      "/usr/bin/crun",
      "/lib64/ld-linux-x86-64.so.2",
      "/lib/x86_64-linux-gnu/libc.so.6",
    ]) {
      assert.deepEqual(m.get(p), { kind: "symlink", path: p, target: `/opt/kata-ts/tools${p}` });
    }
    assert.deepEqual(m.get(guestPaths.toolsMount), { kind: "dir", path: "/opt/kata-ts/tools", mode: 0o755 });
    const agent = m.get("/opt/kata-ts/kata-ts-agent.mjs");
    assert.equal(
      agent?.kind === "file" && agent.source.kind === "path" ? agent.source.path : undefined,
      "/repo/dist/agent/kata-ts-agent.mjs",
    );
  });

  it("carries only busybox, the modules and the agent as files (node and crun stay on the disk)", () => {
    const big = inputs({ node: host("/cache/node/sha/node", 86e6), crun: host("/usr/bin/crun", 5e5) });

    const files = planInitrd(big).filter((e) => e.kind === "file" && e.source.kind === "path");

    assert.deepEqual(files.map((e) => e.path).sort(), [
      "/bin/busybox",
      "/lib/modules/virtio.ko",
      "/lib/modules/virtio_console.ko",
      "/lib/modules/virtio_ring.ko",
      "/opt/kata-ts/kata-ts-agent.mjs",
    ]);
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

describe("planInitrd: how the agent starts", () => {
  const paths = (entries: readonly CpioEntry[]): string[] =>
    entries.map((e) => e.path).filter((p) => p.startsWith("/opt/kata-ts/"));

  it("from its bundle: no snapshot, no launcher", () => {
    const entries = planInitrd(inputs());

    assert.deepEqual(paths(entries).sort(), ["/opt/kata-ts/kata-ts-agent.mjs", "/opt/kata-ts/tools"]);
  });

  it("from its snapshot: the blob, the launcher that falls back to the bundle, and an inittab that runs it", () => {
    const m = byPath(planInitrd(inputs({ agent: { start: "snapshot", snapshot: host("/work/agent.blob", 5e6) } })));

    const blob = m.get(guestPaths.agentSnapshot);
    assert.equal(
      blob?.kind === "file" && blob.source.kind === "path" ? blob.source.path : undefined,
      "/work/agent.blob",
    );
    const launcher = text(m.get(guestPaths.agentStartScript));
    // The same V8 flags as the snapshot's build (below), or the snapshot would not load.
    assert.match(launcher, /\/usr\/bin\/node --jitless --no-expose-wasm --snapshot-blob \/opt\/kata-ts\/agent.blob\n/);
    assert.match(launcher, /\[ "\$rc" != 14 \] && exit "\$rc"/);
    assert.match(launcher, /exec \/usr\/bin\/node --jitless --no-expose-wasm \/opt\/kata-ts\/kata-ts-agent.mjs\n/);
    assert.match(text(m.get("/etc/inittab")), /^::respawn:\/bin\/sh \/opt\/kata-ts\/start-agent$/m);
    assert.ok(m.has(guestPaths.agent), "the bundle stays, as the fallback");
  });

  it("in the snapshot builder: the CommonJS entry and a one-shot build script instead of the agent", () => {
    const m = byPath(planInitrd(inputs({ agent: { start: "build-snapshot", snapshotEntry: host("/repo/a.cjs") } })));

    assert.equal(m.get(guestPaths.agentSnapshotEntry)?.kind, "file");
    assert.match(
      text(m.get(guestPaths.snapshotBuildScript)),
      /node --jitless --no-expose-wasm --snapshot-blob \/mnt\/agent.blob --build-snapshot \/opt\/kata-ts\/kata-ts-agent.cjs/,
    );
    assert.match(text(m.get("/etc/inittab")), /^::once:\/bin\/sh \/opt\/kata-ts\/build-snapshot$/m);
    assert.doesNotMatch(text(m.get("/etc/inittab")), /respawn/);
  });
});

describe("planToolsDisk", () => {
  it("puts node, crun and every library at their guest paths, executable", () => {
    const files = planToolsDisk(inputs());

    assert.deepEqual(
      files.map((f) => [f.path, f.source.sourcePath, f.mode]),
      [
        ["/usr/bin/crun", "/usr/bin/crun", 0o755],
        ["/usr/bin/node", "/cache/node/sha/node", 0o755],
        ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0o755],
        ["/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", 0o755],
      ],
    );
  });

  it("adds the native helpers it is given at their guest paths, executable", () => {
    const files = planToolsDisk(
      inputs({ ttyHelper: host("/dist/native/kata-ts-tty"), sealedExec: host("/dist/native/kata-ts-sealed-exec") }),
    );

    const helpers = files.filter((f) => f.path.startsWith("/usr/bin/kata-ts-"));
    assert.deepEqual(
      helpers.map((f) => [f.path, f.source.sourcePath, f.mode]),
      [
        [guestPaths.ttyHelper, "/dist/native/kata-ts-tty", 0o755],
        [guestPaths.sealedExec, "/dist/native/kata-ts-sealed-exec", 0o755],
      ],
    );
  });

  it("lists a library two binaries share once, but rejects one path with two sources", () => {
    const libc = { guestPath: "/lib/x86_64-linux-gnu/libc.so.6", ...host("/usr/lib/x86_64-linux-gnu/libc.so.6") };

    assert.equal(planToolsDisk(inputs({ libraries: [libc, libc] })).length, 3);
    assert.throws(
      () => planToolsDisk(inputs({ libraries: [libc, { ...libc, sourcePath: "/other/libc.so.6" }] })),
      /tools disk path \/lib\/x86_64-linux-gnu\/libc.so.6 is claimed twice/,
    );
  });

  it("rejects a library path that would leave the disk's root", () => {
    const evil = { guestPath: "/lib/../../etc/passwd", ...host("/x") };

    assert.throws(() => planToolsDisk(inputs({ libraries: [evil] })), /not a normalized absolute path/);
  });
});
