// The boot-time floor: an initrd with only busybox whose /init announces itself on the serial console.
// Booted with the same QEMU, kernel and machine type as a sandbox, it is the reference the boot
// benchmark compares against, and a guest whose agent never answers for the failure tests.

import { mkdir, rename, stat } from "node:fs/promises";
import path from "node:path";
import { ignoreErrno } from "../base/errors.js";
import type { ProcessRunner } from "../platform/process.js";
import type { CpioEntry } from "./cpio.js";
import { writeCpioFile } from "./cpio-writer.js";
import { busyboxApplets } from "./host-inputs.js";

/** The line the floor guest prints, followed by its uptime in seconds. */
export const floorAnnouncement = "kata-ts-floor: up";
/** Kernel parameter that keeps the floor guest running instead of powering off. */
export const floorStayParam = "kata_ts_floor.stay";

const floorInit = `#!/bin/sh
mount -t proc proc /proc
echo "${floorAnnouncement} $(cut -d' ' -f1 /proc/uptime)" >/dev/console
if grep -q ${floorStayParam} /proc/cmdline; then exec sleep 2147483647; fi
poweroff -f
`;

export function planFloorInitrd(busybox: { path: string; sizeBytes: number }, applets: readonly string[]): CpioEntry[] {
  const entries: CpioEntry[] = [
    { kind: "dir", path: "/bin", mode: 0o755 },
    { kind: "dir", path: "/dev", mode: 0o755 },
    { kind: "dir", path: "/proc", mode: 0o555 },
    { kind: "chardev", path: "/dev/console", mode: 0o600, major: 5, minor: 1 },
    { kind: "chardev", path: "/dev/null", mode: 0o666, major: 1, minor: 3 },
    { kind: "file", path: "/bin/busybox", mode: 0o755, source: { kind: "path", ...busybox } },
    { kind: "file", path: "/init", mode: 0o755, source: { kind: "bytes", data: Buffer.from(floorInit) } },
  ];
  for (const a of applets) {
    if (a !== "busybox" && !a.includes("/")) entries.push({ kind: "symlink", path: `/bin/${a}`, target: "busybox" });
  }
  return entries;
}

/** Writes `<dir>/floor-initrd.img` (if missing) and returns its path. */
export async function buildFloorInitrd(
  deps: { runner: ProcessRunner },
  dir: string,
  busyboxPath = "/bin/busybox",
): Promise<string> {
  const out = path.join(dir, "floor-initrd.img");
  const have = await stat(out).catch(ignoreErrno("ENOENT"));
  if (have !== undefined) return out;
  await mkdir(dir, { recursive: true });
  const applets = await busyboxApplets({ runner: deps.runner, progress: () => undefined }, busyboxPath);
  const size = (await stat(busyboxPath)).size;
  const tmp = `${out}.tmp-${process.pid}`;
  await writeCpioFile(tmp, planFloorInitrd({ path: busyboxPath, sizeBytes: size }, applets));
  await rename(tmp, out);
  return out;
}
