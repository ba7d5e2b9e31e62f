// [runtime] disable_guest_seccomp, as Kata: by default a container's seccomp profile is not loaded in the
// guest (the VM is the boundary; the profile would guard only the guest kernel), and with `false` crun
// loads it there. Real QEMU, the real agent, real crun; one `kata-ts run` per setting.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { leftovers, makeRunRoot, removeRunRoot, runCli } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

const skip = requires("root", "qemu", "image");
const vmTimeout = 240_000;
const env = { ...process.env, KATA_TS_IMAGE_DIR: testImageDir };

/** Prints the kernel's seccomp mode of the container's process, then tries the syscall the profile denies. */
const script = "grep '^Seccomp:' /proc/self/status; mkdir /dev/made && echo mkdir-allowed || echo mkdir-denied";

describe("guest seccomp (disable_guest_seccomp, real VM)", { skip }, () => {
  let work = "";
  let root = "";
  const runner = new NodeProcessRunner();

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "kata-ts-seccomp-"));
    root = await makeRunRoot();
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
    await removeRunRoot(root);
  });

  async function run(id: string, configLines: string[]): Promise<string> {
    const config = path.join(work, `${id}.toml`);
    await writeFile(config, [...configLines, ""].join("\n"));
    const dir = await makeBusyboxBundle(
      { runner },
      {
        dir: path.join(work, id),
        args: ["sh", "-c", script],
        edit: (s) => {
          s.linux ??= {};
          // Everything allowed but mkdir: the profile's effect is visible in one command.
          s.linux.seccomp = {
            defaultAction: "SCMP_ACT_ALLOW",
            architectures: ["SCMP_ARCH_X86_64"],
            syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO" }],
          };
        },
      },
    );
    const r = await runCli(["--root", root, "--config", config, "run", "--bundle", dir, id], {
      env,
      timeoutMs: vmTimeout,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await leftovers(root), [], `leftovers after ${id}`);
    return r.stdout.toString();
  }

  it("leaves the profile out by default (Kata's disable_guest_seccomp = true)", { timeout: vmTimeout }, async () => {
    const out = await run("sc-default", []);

    assert.match(out, /^Seccomp:\s+0$/m);
    assert.match(out, /^mkdir-allowed$/m);
  });

  it("loads the profile in the guest with disable_guest_seccomp = false", { timeout: vmTimeout }, async () => {
    const out = await run("sc-on", ["[runtime]", "disable_guest_seccomp = false"]);

    assert.match(out, /^Seccomp:\s+2$/m);
    assert.match(out, /^mkdir-denied$/m);
  });
});
