// `kata-ts check`: can this host run kata-ts containers, and how (KVM or TCG software emulation)?
// Each check says what it found and, when it fails, what to do. Exit status 1 when not capable.

import type { Command } from "commander";
import { defaultImageDir, readGuestImage } from "../../image/guest-image.js";
import type { RuntimeContext } from "../runtime-context.js";
import { errField } from "../../base/log.js";
import { messageOf } from "../../base/errors.js";
import { defaultSpec } from "../../oci/default-spec.js";
import type { Spec } from "../../oci/spec.js";
import type { SandboxVmConfig } from "../../sandbox/sandbox.js";
import { resolveVmConfig } from "../vm-config.js";
import { networkChecks, readKernelFacts, type KernelFacts } from "./check-network.js";

export interface CheckResult {
  readonly name: string;
  readonly ok: boolean;
  /** A warning does not make the host incapable. */
  readonly warning?: boolean;
  readonly detail: string;
  readonly fix?: string;
}

export async function runChecks(
  ctx: RuntimeContext,
  imageDir: string,
  kernelFacts: () => KernelFacts = readKernelFacts,
  resolveVm: (ctx: RuntimeContext, spec: Spec) => Promise<SandboxVmConfig> = resolveVmConfig,
): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const kvm = ctx.probe.kvmProblem();
  out.push(
    kvm === undefined
      ? { name: "hardware virtualization (KVM)", ok: true, detail: "/dev/kvm with kvm_intel or kvm_amd" }
      : {
          name: "hardware virtualization (KVM)",
          ok: false,
          warning: true,
          detail: `${kvm}: VMs run in TCG software emulation (seconds to boot, slower workloads)`,
          fix: "run on a host with VT-x/AMD-V exposed (bare metal, or nested virtualization enabled) and kvm_intel/kvm_amd loaded",
        },
  );
  const qemu = ctx.probe.which("qemu-system-x86_64");
  if (qemu === undefined) {
    out.push({
      name: "QEMU",
      ok: false,
      detail: "qemu-system-x86_64 not found",
      fix: "apt-get install -y qemu-system-x86",
    });
  } else {
    const v = await ctx.runner.run(qemu, ["--version"]).catch((e: unknown) => {
      ctx.logger.warn("qemu --version", { err: errField(e) });
      return undefined;
    });
    const version = /version (\S+)/.exec(v?.stdout ?? "")?.[1] ?? "unknown version";
    out.push({ name: "QEMU", ok: true, detail: `${qemu} ${version}` });
  }
  const image = await readGuestImage(imageDir);
  out.push(
    image === undefined
      ? {
          name: "guest kernel and initrd",
          ok: false,
          detail: `no complete guest image in ${imageDir}`,
          fix: "kata-ts image build",
        }
      : {
          name: "guest kernel and initrd",
          ok: true,
          detail: `${image.kernelPath} (${image.kernelRelease}), ${image.initrdPath}`,
        },
  );
  for (const [bin, pkg] of [
    ["ip", "iproute2"],
    ["nsenter", "util-linux"],
    ["mount", "mount"],
  ] as const) {
    const p = ctx.probe.which(bin);
    out.push(
      p === undefined
        ? { name: bin, ok: false, detail: `${bin} not found`, fix: `apt-get install -y ${pkg}` }
        : { name: bin, ok: true, detail: p },
    );
  }
  // The networking checks depend on the configured model: a configuration that does not load is a failure.
  const loaded = await ctx.config().then(
    (l) => l,
    (e: unknown) => {
      out.push({ name: "configuration", ok: false, detail: messageOf(e), fix: "fix configuration.toml" });
      return undefined;
    },
  );
  if (loaded !== undefined) {
    // The very resolution `create` does, so check never calls capable what create then refuses.
    const files = [loaded.source, ...loaded.dropIns].join(" + ");
    const vm = await resolveVm(ctx, defaultSpec()).then(
      (v) => v,
      (e: unknown) => {
        out.push({ name: "configuration", ok: false, detail: messageOf(e), fix: `fix ${loaded.source}` });
        return undefined;
      },
    );
    if (vm !== undefined) {
      out.push({
        name: "configuration",
        ok: true,
        detail: `${files}: ${vm.machineType}, ${vm.vcpus} vCPU, ${vm.memoryMiB} MiB, kernel ${vm.kernelPath}, initrd ${vm.initrdPath}`,
      });
    }
    for (const w of loaded.warnings) out.push({ name: "configuration", ok: false, warning: true, detail: w });
    out.push(...networkChecks(loaded.config.runtime.internetworkingModel, kernelFacts(), (b) => ctx.probe.which(b)));
  }
  const root = process.getuid?.() === 0;
  out.push(
    root
      ? { name: "privileges", ok: true, detail: "running as root" }
      : {
          name: "privileges",
          ok: false,
          detail: "not root: sandboxes need mounts and network namespaces",
          fix: "run as root",
        },
  );
  return out;
}

/** With `strict` (kata-check's --strict), a warning fails the check too. */
export function renderChecks(
  results: readonly CheckResult[],
  opts: { strict?: boolean } = {},
): { text: string; capable: boolean } {
  const strict = opts.strict === true;
  const lines = results.map((r) => {
    const mark = r.ok ? "ok  " : r.warning === true ? "WARN" : "FAIL";
    return `[${mark}] ${r.name}: ${r.detail}${r.ok || r.fix === undefined ? "" : `\n       fix: ${r.fix}`}`;
  });
  const capable = results.every((r) => r.ok || (r.warning === true && !strict));
  const tcg = results.some((r) => r.name.startsWith("hardware") && !r.ok);
  lines.push(
    capable
      ? `System is capable of running kata-ts containers${tcg ? " (in TCG software emulation: slow but isolated)" : " (KVM)"}`
      : `ERROR: System is not capable of running kata-ts containers (see the ${strict ? "FAIL and WARN" : "FAIL"} lines above)`,
  );
  return { text: lines.join("\n") + "\n", capable };
}

export function registerCheck(program: Command, ctx: () => RuntimeContext): void {
  program
    .command("check")
    .alias("kata-check")
    .description("check that this host can run kata-ts containers with the configuration create would use")
    .option("--strict", "fail on warnings too (no KVM, configuration warnings)")
    .action(async (opts: { strict?: boolean }) => {
      const { text, capable } = renderChecks(
        await runChecks(ctx(), process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir),
        { strict: opts.strict === true },
      );
      process.stdout.write(text);
      if (!capable) process.exitCode = 1;
    });
}
