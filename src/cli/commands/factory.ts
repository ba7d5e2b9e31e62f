// `kata-ts factory init | status | destroy` (Kata's `kata-runtime factory`, reference §4.4): the VM
// template that sandboxes start from when `[factory] enable_template` is set (docs/factory.md).

import type { Command } from "commander";
import { Code, KataError } from "../../base/errors.js";
import type { AgentApi } from "../../agent-client/agent-client.js";
import type { FactoryConfig } from "../../config/types.js";
import { destroyTemplate, initTemplate, templateStatus, type TemplateDeps } from "../../factory/template.js";
import { defaultSpec } from "../../oci/default-spec.js";
import type { RuntimeContext } from "../runtime-context.js";
import { warmupCachedVm, warmupTemplate } from "../factory-warmup.js";
import type { SharedDir } from "../../storage/shared-dir.js";
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
    ...(await cacheEnv(f)),
  };
}

/** The cache server's state, asked only when one is configured or its socket exists. */
async function cacheEnv(f: FactoryConfig): Promise<Record<string, unknown>> {
  const { cacheStatus } = await import("../../factory/cache-admin.js");
  const s = await cacheStatus(f.vmCacheEndpoint).catch((e: unknown) => ({
    state: "broken" as const,
    reason: e instanceof Error ? e.message : String(e),
  }));
  if (s.state === "running") {
    return { VMCacheState: "running", VMCacheServerPid: s.serverPid, VMCacheReady: s.vms.length };
  }
  return { VMCacheState: s.state, ...(s.state === "broken" ? { VMCacheProblem: s.reason } : {}) };
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
  const factory = program.command("factory").description("manage the VM template or the VM cache sandboxes start from");
  const out = (t: string): void => {
    process.stdout.write(t);
  };

  factory
    .command("init")
    .description(
      "boot the template VM and save it in [factory] template_path, or (vm_cache_number > 0) serve the VM cache in the foreground",
    )
    .option("--no-warmup", "save the template right after its agent answers (no warm-up container)")
    .action(async (flags: { warmup?: boolean }) => {
      const c = ctx();
      const f = (await c.config()).config.factory;
      if (!f.enableTemplate && f.vmCacheNumber === 0) {
        out("vm factory or VMCache is not enabled\n");
        return;
      }
      const vm = await resolveVmConfig(c, defaultSpec());
      const warmup =
        flags.warmup === false
          ? undefined
          : (share: string, agent: AgentApi, signal: AbortSignal) =>
              warmupTemplate(share, agent, { msize9p: vm.msize9p, timeoutMs: vm.bootTimeoutMs }, signal);
      const spec = { ...vm, binaryPath: vm.binaryPath ?? "qemu-system-x86_64", bootTimeoutMs: vm.bootTimeoutMs };
      if (f.vmCacheNumber > 0) {
        // Kata's rule: with a cache, init is the cache server, in the foreground until SIGTERM or Quit.
        const { serveVmCache } = await import("../../factory/cache-server.js");
        const cancel = cancelOnSignals();
        try {
          await serveVmCache(
            { ...c.templateDeps(), binder: c.sandboxDeps().binder },
            {
              endpoint: f.vmCacheEndpoint,
              size: f.vmCacheNumber,
              spec,
              ...(flags.warmup === false
                ? {}
                : {
                    warmup: (share: SharedDir, scratch: string, agent: AgentApi, signal: AbortSignal) =>
                      warmupCachedVm(
                        share,
                        scratch,
                        agent,
                        { msize9p: vm.msize9p, timeoutMs: vm.bootTimeoutMs },
                        signal,
                      ),
                  }),
              onListening: () => {
                out(`vm cache server listening on ${f.vmCacheEndpoint} (${f.vmCacheNumber} VMs)\n`);
              },
            },
            cancel.signal,
          );
        } finally {
          cancel.done();
        }
        out("vm cache server stopped\n");
        return;
      }
      const cancel = cancelOnSignals();
      try {
        const rec = await initTemplate(c.templateDeps(), f.templatePath, spec, cancel.signal, warmup);
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
      if (f.vmCacheNumber > 0) {
        const { cacheStatus } = await import("../../factory/cache-admin.js");
        const cs = await cacheStatus(f.vmCacheEndpoint);
        if (cs.state === "running") {
          out(`VM cache server pid = ${cs.serverPid} (pool of ${f.vmCacheNumber}, ${cs.vms.length} ready)\n`);
          for (const v of cs.vms) out(`VM pid = ${v.pid} Cpu = ${v.cpu} Memory = ${v.memoryMiB}MiB\n`);
        } else if (cs.state === "broken") {
          out(`VM cache is broken: ${cs.reason} (kata-ts factory destroy removes what is left)\n`);
        } else {
          out(`VM cache is off: no server on ${f.vmCacheEndpoint} (kata-ts factory init)\n`);
        }
        return;
      }
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
    .description("stop the VM cache server and remove the VM template (its tmpfs and files)")
    .action(async () => {
      const c = ctx();
      const f = (await c.config()).config.factory;
      // Kata's rule: the cache server is stopped (Quit) when the configuration has one.
      if (f.vmCacheNumber > 0) {
        const { destroyCache } = await import("../../factory/cache-admin.js");
        const cache = await destroyCache(c.templateDeps(), f.vmCacheEndpoint);
        if (cache === "stopped") out(`vm cache server on ${f.vmCacheEndpoint} stopped\n`);
        if (cache === "cleaned") out(`removed what a dead vm cache server left on ${f.vmCacheEndpoint}\n`);
      }
      await destroyTemplate(c.templateDeps(), f.templatePath);
      out("vm factory destroyed\n");
    });
}
