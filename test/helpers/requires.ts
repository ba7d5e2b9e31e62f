// Capability gating for tests: `requires(...)` gives node:test a skip reason, or false when every
// capability is present. A capability named in KATA_TS_REQUIRE (comma list, or "all") is mandatory:
// its absence fails the run instead of skipping (CI sets KATA_TS_REQUIRE=all).

import { accessSync, constants, existsSync } from "node:fs";
import path from "node:path";
const defaultImageDir = "/var/cache/kata-ts/image";
/** Where Debian's containernetworking-plugins puts the plugins. */
const cniPath = "/usr/lib/cni";

export type Capability =
  | "root"
  | "kvm"
  | "qemu"
  | "crun"
  | "runc"
  | "netns"
  | "image"
  | "containerd"
  | "cpio"
  | "erofs"
  | "image-build"
  | "cni"
  | "podman";

/** What building the guest image needs from Debian, besides crun, cpio and mkfs.erofs: binary → package. */
const imageBuildTools: Readonly<Record<string, string>> = {
  "dpkg-deb": "dpkg",
  "apt-get": "apt",
  xz: "xz-utils",
};
/** The image carries the host's static busybox from this path (src/image/host-inputs.ts). */
const busyboxPath = "/bin/busybox";
const imageBuildNeeds = [
  ...Object.entries(imageBuildTools).map(([bin, pkg]) => `${bin} (${pkg})`),
  `${busyboxPath} (busybox-static)`,
];

function onPath(bin: string): boolean {
  return (process.env["PATH"] ?? "").split(":").some((d) => d !== "" && existsSync(path.join(d, bin)));
}

function canAccess(p: string, mode: number): boolean {
  try {
    accessSync(p, mode);
    return true;
  } catch {
    return false;
  }
}

/** Where integration tests find the guest image (built by `kata-ts image build` / scripts/setup.sh). */
export const testImageDir = process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir;

const probes: Record<Capability, () => boolean> = {
  root: () => process.getuid?.() === 0,
  kvm: () =>
    canAccess("/dev/kvm", constants.R_OK | constants.W_OK) &&
    (existsSync("/sys/module/kvm_intel") || existsSync("/sys/module/kvm_amd")),
  qemu: () => onPath("qemu-system-x86_64"),
  crun: () => onPath("crun"),
  runc: () => onPath("runc"),
  netns: () => process.getuid?.() === 0 && onPath("ip"),
  image: () => existsSync(path.join(testImageDir, "manifest.json")),
  containerd: () => onPath("containerd") && onPath("ctr"),
  cpio: () => onPath("cpio"),
  erofs: () => onPath("mkfs.erofs"),
  "image-build": () => Object.keys(imageBuildTools).every(onPath) && existsSync(busyboxPath),
  podman: () => onPath("podman") && onPath("conmon"),
  cni: () => ["bridge", "host-local", "loopback"].every((p) => existsSync(path.join(cniPath, p))) && onPath("tc"),
};

const reasons: Record<Capability, string> = {
  root: "needs root (mounts, network namespaces)",
  kvm: "needs /dev/kvm",
  qemu: "needs qemu-system-x86_64 (apt-get install qemu-system-x86)",
  crun: "needs crun",
  runc: "needs runc (apt-get install runc): the reference the OCI CLI is compared with",
  netns: "needs root and iproute2 for network namespaces",
  image: `needs the guest image in ${testImageDir} (kata-ts image build)`,
  containerd: "needs containerd and ctr",
  cpio: "needs cpio (apt-get install -y cpio)",
  erofs: "needs mkfs.erofs (apt-get install -y erofs-utils)",
  "image-build": `needs ${imageBuildNeeds.join(", ")}`,
  podman: "needs podman and conmon (apt-get install -y podman conmon)",
  cni: `needs CNI's bridge, host-local and loopback plugins in ${cniPath} and tc (apt-get install -y containernetworking-plugins iproute2)`,
};

export function requires(...caps: Capability[]): string | false {
  const missing = caps.filter((c) => !probes[c]());
  if (missing.length === 0) return false;
  const env = process.env["KATA_TS_REQUIRE"] ?? "";
  const mandatory = new Set(env.split(",").map((s) => s.trim()));
  const fatal = env === "all" ? missing : missing.filter((c) => mandatory.has(c));
  if (fatal.length > 0) {
    throw new Error(`KATA_TS_REQUIRE=${env}: missing ${fatal.map((c) => reasons[c]).join("; ")}`);
  }
  return missing.map((c) => reasons[c]).join("; ");
}
