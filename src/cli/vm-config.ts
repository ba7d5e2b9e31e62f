// The VM a sandbox gets. Until configuration.toml is read (a later issue), these are the defaults: the
// image built by `kata-ts image build`, a microvm with one vCPU under KVM or TCG. KATA_TS_KERNEL,
// KATA_TS_INITRD and KATA_TS_KERNEL_PARAMS override the image (tests and benchmarks use them).

import { Code, KataError } from "../base/errors.js";
import { defaultImageDir, readGuestImage } from "../image/guest-image.js";
import type { SandboxVmConfig } from "../sandbox/sandbox.js";
import type { RuntimeContext } from "./runtime-context.js";

async function imagePaths(): Promise<{ kernelPath: string; initrdPath: string }> {
  const kernel = process.env["KATA_TS_KERNEL"];
  const initrd = process.env["KATA_TS_INITRD"];
  if (kernel !== undefined && initrd !== undefined) return { kernelPath: kernel, initrdPath: initrd };
  const imageDir = process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir;
  const image = await readGuestImage(imageDir);
  if (image === undefined) {
    const flag = imageDir === defaultImageDir ? "" : ` --output ${imageDir}`;
    throw new KataError(
      Code.NotFound,
      `no complete guest image (kernel and initrd) in ${imageDir}: build it with: kata-ts image build${flag}`,
    );
  }
  return { kernelPath: kernel ?? image.kernelPath, initrdPath: initrd ?? image.initrdPath };
}

export async function resolveVmConfig(ctx: RuntimeContext): Promise<SandboxVmConfig> {
  const paths = await imagePaths();
  if (ctx.probe.which("qemu-system-x86_64") === undefined) {
    throw new KataError(
      Code.NotFound,
      "qemu-system-x86_64 is not installed (install the Debian package qemu-system-x86)",
    );
  }
  const extra = (process.env["KATA_TS_KERNEL_PARAMS"] ?? "").split(" ").filter((p) => p !== "");
  return {
    machineType: "microvm",
    vcpus: 1,
    memoryMiB: 2048,
    ...paths,
    kernelParams: ["panic=1", ...extra],
    bootTimeoutMs: Number(process.env["KATA_TS_BOOT_TIMEOUT_MS"] ?? 60_000),
    msize9p: 262144,
  };
}
