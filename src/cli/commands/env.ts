// `kata-ts env [--json]`: what this kata-ts would use and where it runs, in the sections of Kata's
// `kata-env` (TOML by default), so bug reports carry the facts.

import { readFile } from "node:fs/promises";
import { arch, release } from "node:os";
import type { Command } from "commander";
import { stringify } from "smol-toml";
import { kernelParams } from "../../config/kernel-params.js";
import { readGuestImage } from "../../image/guest-image.js";
import type { RuntimeContext } from "../runtime-context.js";
import { installRoot } from "../runtime-context.js";
import path from "node:path";
import { Code, ignoreCode, ignoreErrno } from "../../base/errors.js";
import { agentPortName } from "../../protocol/guest-paths.js";
import { factoryEnv } from "./factory.js";

async function distro(): Promise<{ Name: string; Version: string }> {
  const text = (await readFile("/etc/os-release", "utf8").catch(ignoreErrno("ENOENT"))) ?? "";
  const field = (k: string): string => new RegExp(`^${k}="?([^"\\n]*)"?$`, "m").exec(text)?.[1] ?? "";
  return { Name: field("NAME"), Version: field("VERSION_ID") };
}

function cpu(cpuinfo: string): { Vendor: string; Model: string } {
  const get = (k: string): string => new RegExp(`^${k}\\s*:\\s*(.*)$`, "m").exec(cpuinfo)?.[1] ?? "";
  return { Vendor: get("vendor_id"), Model: get("model name") };
}

/**
 * The host's kernel samepage merging: QEMU marks guest RAM mergeable, so where ksmd runs, identical
 * pages of pods are kept once (density; and a page-deduplication side channel: docs/factory.md#ksm).
 */
export async function ksmState(dir = "/sys/kernel/mm/ksm"): Promise<{ Run: string; SharingMiB: number }> {
  const read = async (name: string): Promise<string | undefined> =>
    (await readFile(path.join(dir, name), "utf8").catch(ignoreErrno("ENOENT")))?.trim();
  const run = await read("run");
  if (run === undefined) return { Run: "absent", SharingMiB: 0 };
  const sharing = Number((await read("pages_sharing")) ?? "0");
  return { Run: run === "1" ? "on" : "off", SharingMiB: Math.round((sharing * 4096) / 2 ** 20) };
}

export async function envReport(ctx: RuntimeContext): Promise<Record<string, unknown>> {
  const loaded = await ctx.config();
  const cfg = loaded.config;
  const pkg = JSON.parse(await readFile(path.join(installRoot, "package.json"), "utf8")) as { version?: string };
  const image = await readGuestImage(path.dirname(cfg.hypervisor.initrd));
  // A missing QEMU is reported by `check`; here its version is just empty.
  const qemuVersion =
    (await ctx.runner.run(cfg.hypervisor.path, ["--version"]).catch(ignoreCode(Code.NotFound)))?.stdout ?? "";
  const kvmProblem = ctx.probe.kvmProblem();
  return {
    Meta: { Version: "1.0.24" },
    Runtime: {
      Version: { Semver: pkg.version ?? "", Commit: "" },
      OCI: "1.0.2",
      Config: { Path: loaded.source, DropIns: loaded.dropIns },
      Debug: cfg.runtime.enableDebug,
      Trace: cfg.runtime.enableTracing,
      DisableNewNetNs: cfg.runtime.disableNewNetns,
      // Not in Kata's kata-env (it shows only DisableNewNetNs); next to it because the two go together.
      InternetworkingModel: cfg.runtime.internetworkingModel,
      SandboxCgroupOnly: cfg.runtime.sandboxCgroupOnly,
      Path: process.argv[1] ?? "",
      Warnings: loaded.warnings,
    },
    Hypervisor: {
      MachineType: cfg.hypervisor.machineType,
      Version: /version (\S+)/.exec(qemuVersion)?.[1] ?? "",
      Path: cfg.hypervisor.path,
      Accelerator: kvmProblem === undefined ? "kvm" : "tcg",
      SharedFS: cfg.hypervisor.sharedFs,
      Msize9p: cfg.hypervisor.msize9p,
      BlockDeviceDriver: cfg.hypervisor.blockDeviceDriver,
      MemorySlots: cfg.hypervisor.memorySlots,
      Debug: cfg.hypervisor.enableDebug,
      UseVSock: false,
    },
    Image: { Path: cfg.hypervisor.image },
    Kernel: { Path: cfg.hypervisor.kernel, Parameters: kernelParams(cfg).join(" ") },
    Initrd: { Path: cfg.hypervisor.initrd, Built: image !== undefined, KernelRelease: image?.kernelRelease ?? "" },
    Agent: { Debug: cfg.agent.enableDebug, Trace: cfg.agent.enableTracing, Channel: `virtio-serial ${agentPortName}` },
    Factory: await factoryEnv(ctx.templateDeps(), cfg.factory),
    Host: {
      Kernel: release(),
      Architecture: arch(),
      Distro: await distro(),
      CPU: cpu(ctx.probe.cpuinfo()),
      VMContainerCapable: true,
      KVM: kvmProblem ?? "usable",
      SupportVSocks: false,
      KSM: await ksmState(),
    },
  };
}

export function registerEnv(program: Command, ctx: () => RuntimeContext): void {
  program
    .command("env")
    .alias("kata-env")
    .description("show the runtime's settings and the host's facts")
    .option("--json", "JSON instead of TOML")
    .action(async (flags: { json?: boolean }) => {
      const report = await envReport(ctx());
      process.stdout.write(flags.json === true ? JSON.stringify(report, null, 2) + "\n" : stringify(report) + "\n");
    });
}
