// Factory selection (Kata's HandleFactory): where a sandbox's VM comes from. Nothing unless the
// configuration enables a factory; a factory is only ever fetched here, never built (that is `kata-ts
// factory init`); any reason not to use it is a warning and the sandbox boots directly. With
// vm_cache_number > 0 the VM comes from the VM cache server (cache-client.ts) and the template is not
// consulted (Kata's rule: the cache client replaces the template factory).

import { randomBytes } from "node:crypto";
import { concurrently } from "../base/async.js";
import { errField } from "../base/log.js";
import type { AgentApi } from "../agent-client/agent-client.js";
import type { Vm, VmConfig } from "../hypervisor/hypervisor.js";
import { defaultConfig } from "../config/defaults.js";
import type { CacheVmSource } from "./cache-client.js";
import type { PodLink } from "./cache-net-plan.js";
import { fetchTemplate, startClone, templateRequest, type TemplateDeps } from "./template.js";
import { cloneNics, type NicMacChange } from "./template-plan.js";

/** `[factory]` as a sandbox sees it. */
export interface FactorySettings {
  readonly enableTemplate: boolean;
  readonly templatePath: string;
  readonly vmCacheNumber: number;
  /** The VM cache server's socket (vm_cache_endpoint); absent: the default's. */
  readonly vmCacheEndpoint?: string;
}

/** A VM a factory handed out: running, its agent not yet reached. */
export interface FactoryVm {
  readonly vm: Vm;
  /**
   * "template": the sandbox still owes it fresh randomness and the clock once its agent answers.
   * "cache": a VM that booted on its own (its randomness is its own) and whose clock ran all along.
   */
  readonly source: "template" | "cache";
  /**
   * MACs the guest must give its NICs (a clone keeps the template's NIC, a cached VM its own:
   * docs/factory.md#nics).
   */
  readonly nicMacChanges?: readonly NicMacChange[];
}

export interface VmFactory {
  /** A VM for `config`, or undefined: boot directly (the reason was logged as a warning). */
  /** `links`: the pod's interfaces and their taps in `config.netnsPath` (config.nics, in order). */
  getVm(
    settings: FactorySettings,
    config: VmConfig,
    signal: AbortSignal,
    links?: readonly PodLink[],
  ): Promise<FactoryVm | undefined>;
}

export class TemplateVmFactory implements VmFactory {
  readonly #deps: TemplateDeps;
  readonly #cache: CacheVmSource | undefined;

  constructor(deps: TemplateDeps, cache?: CacheVmSource) {
    this.#deps = deps;
    this.#cache = cache;
  }

  async getVm(
    settings: FactorySettings,
    config: VmConfig,
    signal: AbortSignal,
    links: readonly PodLink[] = [],
  ): Promise<FactoryVm | undefined> {
    const log = this.#deps.logger.child({ sandboxId: config.id });
    if (settings.vmCacheNumber > 0) {
      if (this.#cache === undefined) {
        log.warn("vm factory: the VM cache cannot be used here; booting directly");
        return undefined;
      }
      const got = await this.#cache.getVm(
        settings.vmCacheEndpoint ?? defaultConfig.factory.vmCacheEndpoint,
        config,
        signal,
        links,
      );
      return got === undefined ? undefined : { vm: got.vm, source: "cache", nicMacChanges: got.nicMacChanges };
    }
    if (!settings.enableTemplate) return undefined;
    if (config.binaryPath === undefined) return undefined;
    let fetched;
    try {
      const spec = { ...config, binaryPath: config.binaryPath };
      const req = await templateRequest(this.#deps, spec, config.nics, config.netnsPath !== undefined);
      fetched = await fetchTemplate(this.#deps, settings.templatePath, req);
    } catch (e) {
      log.warn("vm factory: cannot use the VM template; booting directly", { err: errField(e) });
      return undefined;
    }
    try {
      const vm = await startClone(this.#deps, fetched, config, signal);
      log.info("vm factory: started from the VM template", { templatePath: settings.templatePath });
      return { vm, source: "template", nicMacChanges: cloneNics(fetched.record, config.nics ?? []).macChanges };
    } catch (e) {
      if (signal.aborted) throw e;
      log.warn("vm factory: the VM template did not restore; booting directly", { err: errField(e) });
      return undefined;
    }
  }
}

/** Bytes of host randomness a clone's guest gets (Kata's ReseedRNG: 512). */
const reseedBytes = 512;

/**
 * What a VM restored from a template needs before anything runs in it: the template's random state
 * replaced (every clone would otherwise draw the same numbers) and the clock set (it carries the
 * template's). Failing either fails the sandbox: an unreseeded clone is not safe to use.
 */
export async function refreshClone(agent: AgentApi, opts: { signal: AbortSignal; timeoutMs: number }): Promise<void> {
  // Independent of each other: sent together, the guest works on both at once.
  await concurrently(
    [
      (signal) => agent.reseedRandomDev({ data: randomBytes(reseedBytes) }, { ...opts, signal }),
      (signal) => {
        const now = Date.now();
        const t = { Sec: BigInt(Math.floor(now / 1000)), Usec: BigInt((now % 1000) * 1000) };
        return agent.setGuestDateTime(t, { ...opts, signal });
      },
    ],
    opts.signal,
  );
}
