// `kata-ts factory init | status | destroy` (Kata's `kata-runtime factory`, reference §4.4): the VM
// template that sandboxes start from when `[factory] enable_template` is set (docs/factory.md).

import type { Command } from "commander";
import { Code, KataError } from "../../base/errors.js";
import type { FactoryConfig } from "../../config/types.js";
import { destroyTemplate, initTemplate, templateStatus, type TemplateDeps } from "../../factory/template.js";
import { defaultSpec } from "../../oci/default-spec.js";
import type { RuntimeContext } from "../runtime-context.js";
import { warmupTemplate } from "../factory-warmup.js";
import { resolveVmConfig } from "../vm-config.js";

/** The `Factory` section of `kata-ts env`. */
export async function factoryEnv(deps: TemplateDeps, f: FactoryConfig): Promise<Record<string, unknown>> {
  const status = await templateStatus(deps, f.templatePath).catch((e: unknown) => ({
    state: "broken" as const,
    reason: e instanceof Error ? e.message : String(e),
  }));
  return {
    Template: f.enableTemplate,
    TemplatePath: f.templatePath,
    TemplateState: status.state,
    ...(status.state === "broken" ? { TemplateProblem: status.reason } : {}),
    ...(status.state === "on" ? { TemplateCreated: status.record.createdAt } : {}),
    VMCacheNumber: f.vmCacheNumber,
    VMCacheEndpoint: f.vmCacheEndpoint,
  };
}

function cancelOnSignals(): { signal: AbortSignal; done(): void } {
  const c = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    c.abort(new KataError(Code.Cancelled, `interrupted by ${sig}`));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return {
    signal: c.signal,
    done: () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}

export function registerFactory(program: Command, ctx: () => RuntimeContext): void {
  const factory = program.command("factory").description("manage the VM template sandboxes start from");
  const out = (t: string): void => {
    process.stdout.write(t);
  };

  factory
    .command("init")
    .description("boot the template VM and save it in [factory] template_path")
    .option("--no-warmup", "save the template right after its agent answers (no warm-up container)")
    .action(async (flags: { warmup?: boolean }) => {
      const c = ctx();
      const f = (await c.config()).config.factory;
      if (!f.enableTemplate) {
        if (f.vmCacheNumber > 0) {
          throw new KataError(Code.Unimplemented, "[factory] vm_cache_number: the VM cache is not supported yet");
        }
        out("vm factory or VMCache is not enabled\n");
        return;
      }
      const vm = await resolveVmConfig(c, defaultSpec());
      const cancel = cancelOnSignals();
      try {
        const rec = await initTemplate(
          c.templateDeps(),
          f.templatePath,
          { ...vm, binaryPath: vm.binaryPath ?? "qemu-system-x86_64", bootTimeoutMs: vm.bootTimeoutMs },
          cancel.signal,
          flags.warmup === false
            ? undefined
            : (share, agent, signal) =>
                warmupTemplate(share, agent, { msize9p: vm.msize9p, timeoutMs: vm.bootTimeoutMs }, signal),
        );
        out(
          `vm factory initialized: template in ${f.templatePath} (${rec.machineType}, ${rec.vcpus} vCPU, ` +
            `${rec.memoryMiB} MiB, device state ${rec.stateBytes} bytes)\n`,
        );
      } finally {
        cancel.done();
      }
    });

  factory
    .command("status")
    .description("say whether a VM template is ready")
    .action(async () => {
      const c = ctx();
      const f = (await c.config()).config.factory;
      const s = await templateStatus(c.templateDeps(), f.templatePath);
      if (!f.enableTemplate) out("vm factory not enabled\n");
      if (s.state === "on") {
        const r = s.record;
        out(
          `vm factory is on: ${f.templatePath} (${r.machineType}, ${r.vcpus} vCPU, ${r.memoryMiB} MiB, ` +
            `created ${r.createdAt})\n`,
        );
      } else if (s.state === "broken") {
        out(`vm factory is broken: ${s.reason} (kata-ts factory destroy, then init)\n`);
      } else if (f.enableTemplate) {
        out("vm factory is off\n");
      }
    });

  factory
    .command("destroy")
    .description("remove the VM template (its tmpfs and files)")
    .action(async () => {
      const c = ctx();
      const f = (await c.config()).config.factory;
      await destroyTemplate(c.templateDeps(), f.templatePath);
      out("vm factory destroyed\n");
    });
}
