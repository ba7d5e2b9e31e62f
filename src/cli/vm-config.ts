// The VM a sandbox gets. Until configuration.toml is read (a later issue), these are the defaults: the
// image built by `kata-ts image build`, a microvm with one vCPU under TCG or KVM.

import { Code, KataError } from "../base/errors.js";
import { defaultImageDir, readGuestImage } from "../image/guest-image.js";
import type { SandboxVmConfig } from "../sandbox/sandbox.js";
import type { RuntimeContext } from "./runtime-context.js";

export async function resolveVmConfig(ctx: RuntimeContext): Promise<SandboxVmConfig> {
  const imageDir = process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir;
  const image = await readGuestImage(imageDir);
  if (image === undefined) {
    throw new KataError(
      Code.NotFound,
      `no guest image in ${imageDir} (build it with: kata-ts image build${imageDir === defaultImageDir ? "" : ` --output ${imageDir}`})`,
    );
  }
  if (ctx.probe.which("qemu-system-x86_64") === undefined) {
    throw new KataError(
      Code.NotFound,
      "qemu-system-x86_64 is not installed (install the Debian package qemu-system-x86)",
    );
  }
  return {
    machineType: "microvm",
    vcpus: 1,
    memoryMiB: 2048,
    kernelPath: image.kernelPath,
    initrdPath: image.initrdPath,
    kernelParams: ["panic=1"],
    bootTimeoutMs: Number(process.env["KATA_TS_BOOT_TIMEOUT_MS"] ?? 60_000),
    msize9p: 262144,
  };
}
