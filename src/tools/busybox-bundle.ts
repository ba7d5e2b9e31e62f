// Makes an OCI bundle from the host's static busybox, with no registry: the demo's, the tests' and
// the benchmark's container. busybox --list includes "busybox" itself: never link over the binary.

import { copyFile, mkdir, rm, symlink, writeFile, chmod } from "node:fs/promises";
import path from "node:path";
import { Code, KataError, errnoOf, ignoreErrno } from "../base/errors.js";
import { defaultSpec } from "../oci/default-spec.js";
import type { Spec } from "../oci/spec.js";
import { runChecked, type ProcessRunner } from "../platform/process.js";

export const defaultBusybox = "/bin/busybox";

export interface BusyboxBundleOptions {
  readonly dir: string;
  readonly args: string[];
  readonly busybox?: string;
  /** Edits the generated config.json before it is written. */
  readonly edit?: (spec: Spec) => void;
}

export async function makeBusyboxBundle(deps: { runner: ProcessRunner }, opts: BusyboxBundleOptions): Promise<string> {
  const busybox = opts.busybox ?? defaultBusybox;
  const rootfs = path.join(opts.dir, "rootfs");
  await rm(opts.dir, { recursive: true, force: true });
  for (const d of ["bin", "proc", "sys", "dev", "tmp", "etc", "root", "var", "run"]) {
    await mkdir(path.join(rootfs, d), { recursive: true });
  }
  await chmod(path.join(rootfs, "tmp"), 0o1777);
  try {
    await copyFile(busybox, path.join(rootfs, "bin", "busybox"));
  } catch (e) {
    if (errnoOf(e) === "ENOENT") {
      throw new KataError(Code.NotFound, `${busybox} not found (install the Debian package busybox-static)`);
    }
    throw e;
  }
  await chmod(path.join(rootfs, "bin", "busybox"), 0o755);
  const list = await runChecked(deps.runner, busybox, ["--list"]);
  for (const applet of list.stdout.split("\n").map((s) => s.trim())) {
    if (applet === "" || applet === "busybox" || applet.includes("/")) continue;
    await symlink("busybox", path.join(rootfs, "bin", applet)).catch(ignoreErrno("EEXIST"));
  }
  await writeFile(
    path.join(rootfs, "etc", "passwd"),
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
  );
  await writeFile(path.join(rootfs, "etc", "group"), "root:x:0:\nnobody:x:65534:\n");
  const spec = defaultSpec({ args: opts.args, terminal: false });
  spec.hostname = "busybox";
  opts.edit?.(spec);
  await writeFile(path.join(opts.dir, "config.json"), JSON.stringify(spec, null, 2) + "\n");
  return opts.dir;
}
