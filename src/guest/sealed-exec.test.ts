// The real crun launcher (dist/native/kata-ts-sealed-exec, built by `npm run build`) on the host: the
// program it runs is a sealed in-memory copy, so crun's CVE-2019-5736 defence finds nothing to redo.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { requires } from "../../test/helpers/requires.js";

const installRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const launcher = path.join(installRoot, "dist", "native", "kata-ts-sealed-exec");
const run = promisify(execFile);

describe("kata-ts-sealed-exec", () => {
  // image-build: the busybox-static the guest image is made of.
  it("runs the program from a memfd, with its own path as argv[0]", { skip: requires("image-build") }, async () => {
    // busybox runs its applets in-process: /proc/self/exe is the launcher's copy.
    const exe = await run(launcher, ["/bin/busybox", "readlink", "/proc/self/exe"]);
    const argv0 = await run(launcher, ["/bin/busybox", "sh", "-c", 'echo "$0"']);

    assert.match(exe.stdout.trim(), /^\/memfd:kata-ts-sealed \(deleted\)$/);
    assert.equal(argv0.stdout.trim(), "sh");
  });

  it(
    "runs crun once: crun finds itself sealed and does not copy itself again",
    { skip: requires("crun") },
    async () => {
      // crun's copy of itself is a memfd named crun_cloned:/proc/self/exe; ours is kata-ts-sealed.
      const env = { ...process.env, LD_DEBUG: "files" };
      const starts = (stderr: string): number => (stderr.match(/initialize program: \/usr\/bin\/crun/g) ?? []).length;
      const sealed = await run(launcher, ["/usr/bin/crun", "--version"], { env });
      const direct = await run("/usr/bin/crun", ["--version"], { env });

      assert.match(sealed.stdout, /^crun version /);
      assert.equal(starts(sealed.stderr), 1, sealed.stderr.slice(0, 2000));
      assert.ok(starts(direct.stderr) > 1, "crun run direct copies itself (else this test proves nothing)");
    },
  );

  it("refuses a relative program (125) and names a missing one (127)", async () => {
    const relative = await run(launcher, ["crun"]).then(
      () => assert.fail("a relative program ran"),
      (e: unknown) => e as { code: number; stderr: string },
    );
    const missing = await run(launcher, ["/nonexistent/prog"]).then(
      () => assert.fail("a missing program ran"),
      (e: unknown) => e as { code: number; stderr: string },
    );

    assert.equal(relative.code, 125);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /open \/nonexistent\/prog: No such file or directory/);
  });
});
