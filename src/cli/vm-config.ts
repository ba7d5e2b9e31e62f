// The VM a sandbox gets. Until configuration.toml is read (a later issue), these are the defaults: the
// image built by `kata-ts image build`, a microvm with one vCPU under KVM or TCG. KATA_TS_KERNEL,
// KATA_TS_INITRD, KATA_TS_TOOLS_DISK and KATA_TS_KERNEL_PARAMS override the image (tests and benchmarks
// use them). With both KATA_TS_KERNEL and KATA_TS_INITRD set the image is not read, and the VM gets a
// tools disk only when KATA_TS_TOOLS_DISK names one (an initrd such as the boot floor needs none).

import { Code, KataError } from "../base/errors.js";
import { toolsDiskSerial } from "../image/guest-init.js";
import { defaultImageDir, readGuestImage } from "../image/guest-image.js";
import type { ReadonlyDisk } from "../hypervisor/hypervisor.js";
import type { SandboxVmConfig } from "../sandbox/sandbox.js";
import type { RuntimeContext } from "./runtime-context.js";

interface ImagePaths {
  readonly kernelPath: string;
  readonly initrdPath: string;
  readonly readonlyDisks: readonly ReadonlyDisk[];
}

async function imagePaths(): Promise<ImagePaths> {
  const kernel = process.env["KATA_TS_KERNEL"];
  const initrd = process.env["KATA_TS_INITRD"];
  const toolsDisk = process.env["KATA_TS_TOOLS_DISK"];
  const tools = (path: string): ReadonlyDisk[] => [{ path, serial: toolsDiskSerial }];
  if (kernel !== undefined && initrd !== undefined) {
    return { kernelPath: kernel, initrdPath: initrd, readonlyDisks: toolsDisk === undefined ? [] : tools(toolsDisk) };
  }
  const imageDir = process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir;
  const image = await readGuestImage(imageDir);
  if (image === undefined) {
    const flag = imageDir === defaultImageDir ? "" : ` --output ${imageDir}`;
    throw new KataError(
      Code.NotFound,
      `no complete guest image (kernel, initrd and tools disk) in ${imageDir}: build it with: kata-ts image build${flag}`,
    );
  }
  return {
    kernelPath: kernel ?? image.kernelPath,
    initrdPath: initrd ?? image.initrdPath,
    readonlyDisks: tools(toolsDisk ?? image.toolsDiskPath),
  };
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
