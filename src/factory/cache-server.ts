// The VM cache server (Kata's `kata-runtime factory init` with vm_cache_number, docs/factory.md#vm-cache):
// keeps `size` pre-booted, warmed-up VMs and hands them out over cache.CacheService (gRPC on a unix
// socket, mode 0600). Each VM runs under a guard (src/platform/vm-guard.ts) with this process as its
// owner until a sandbox takes it over; a VM handed out but not taken within adoptWindowMs is stopped.
// Runs in the foreground until SIGTERM/SIGINT (the caller's signal) or Quit; then it stops every VM it
// still owns and removes its socket and directory.

import { mkdir, rm, unlink, chmod } from "node:fs/promises";
import path from "node:path";
import { Server, ServerCredentials, status, type ServiceDefinition } from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import { delay, deadline, deferred, longLivedController, settlesWithin } from "../base/async.js";
import { Code, KataError, ignoreErrno, wrap } from "../base/errors.js";
import { errField } from "../base/log.js";
import type { Vm } from "../hypervisor/hypervisor.js";
import type { AgentApi } from "../agent-client/agent-client.js";
import type { ShareBinder } from "../platform/share-binder.js";
import {
  CacheService,
  GrpcStatusSchema,
  GrpcVMConfigSchema,
  GrpcVMSchema,
  GrpcVMStatusSchema,
} from "../protocol/gen/cache_pb.js";
import { SharedDir } from "../storage/shared-dir.js";
import { CachePool } from "./cache-pool.js";
import { claimEndpoint, removeCacheDir } from "./cache-endpoint.js";
import { makeVmNetns, removeVmNetns } from "./cache-net.js";
import {
  cacheDirOf,
  cacheVmPaths,
  encodeCachedVm,
  encodeCacheRecord,
  maxCacheMessageBytes,
  protoCodec,
} from "./cache-wire.js";
import { agentAnswersThenLetGo, templateRequest, type TemplateDeps, type TemplateSpec } from "./template.js";
import { recordFor, templateNic } from "./template-plan.js";

export interface CacheServerDeps extends TemplateDeps {
  readonly binder: ShareBinder;
}

export interface CacheServerOptions {
  readonly endpoint: string;
  readonly size: number;
  readonly spec: TemplateSpec;
  /**
   * Run in each VM before it is ready (the template's warm-up), given the VM's share and a scratch
   * directory of its own; it must leave the share unmounted in the guest.
   */
  readonly warmup?: (share: SharedDir, scratchDir: string, agent: AgentApi, signal: AbortSignal) => Promise<string>;
  /** Told once the socket listens. */
  readonly onListening?: () => void;
}

/** How long a sandbox may take to take over a VM it was handed (its guard then kills it). */
export const adoptWindowMs = 30_000;
/** At stop, how long a sandbox that was handed a VM still gets to take it over. */
const stopAdoptGraceMs = 3000;
/** After Quit, the server answers, then stops (Kata: 1 s; ours need not wait that long). */
const quitAfterMs = 100;
/** Between failed boots: a broken configuration must not spin the CPUs. */
const bootRetryMs = [2000, 5000, 15_000, 60_000] as const;

interface Entry {
  readonly id: string;
  readonly vm: Vm;
  readonly share: SharedDir;
}

/** Serves the VM cache until `signal` aborts or a client calls Quit; resolves once everything is stopped. */
export async function serveVmCache(
  deps: CacheServerDeps,
  opts: CacheServerOptions,
  signal: AbortSignal,
): Promise<void> {
  const { endpoint, spec } = opts;
  const log = deps.logger.child({ component: "vm-cache", endpoint });
  const cacheDir = cacheDirOf(endpoint);
  await claimEndpoint(endpoint);
  await removeCacheDir(deps, cacheDir);
  await mkdir(path.dirname(endpoint), { recursive: true, mode: 0o700 });
  await mkdir(path.join(cacheDir, "vm"), { recursive: true, mode: 0o700 });
  await mkdir(path.join(cacheDir, "share"), { mode: 0o700 });

  const request = await templateRequest(deps, spec);
  // The template's NIC, on a tap in the VM's own netns: its new owner moves the tap into the pod's
  // (docs/factory.md#nics-in-cached-vms). Without namespaces to make, no NIC.
  const netns = deps.netns;
  const record = recordFor(request, spec, {
    nics: netns === undefined ? [] : [templateNic],
    stateBytes: 0,
    warmup: opts.warmup === undefined ? "none" : "container",
  });

  const pool = new CachePool(opts.size);
  const entries = new Map<string, Entry>();
  /** Aborted at stop: boots in flight give up. */
  const life = longLivedController();
  const boots = new Set<Promise<void>>();
  const handouts = new Set<Promise<void>>();
  const waiters = new Set<() => void>();
  let failures = 0;
  const stopped = deferred<undefined>();

  const wake = (): void => {
    for (const w of [...waiters]) w();
  };

  const dropNetns = async (id: string): Promise<void> => {
    await (netns === undefined ? undefined : removeVmNetns(netns, cacheDir, id))?.catch((err: unknown) => {
      log.warn("remove a cached VM's network namespace", { vm: id, err: errField(err) });
    });
  };

  const dropEntry = async (e: Entry, why: string): Promise<void> => {
    entries.delete(e.id);
    pool.forget(e.id);
    log.info("cached VM stopped", { vm: e.id, why });
    await e.vm.stop().catch((err: unknown) => {
      log.warn("stop a cached VM", { vm: e.id, err: errField(err) });
    });
    await e.share.teardown().catch((err: unknown) => {
      log.warn("remove a cached VM's share", { vm: e.id, err: errField(err) });
    });
    await dropNetns(e.id);
  };

  const boot = async (id: string): Promise<void> => {
    const paths = cacheVmPaths(cacheDir, id);
    const root = paths.shareRoot;
    const share = new SharedDir(deps, { root, mounts: path.join(root, "mounts"), shared: path.join(root, "shared") });
    let vm: Vm | undefined;
    const vlog = log.child({ vm: id });
    try {
      await share.setup();
      // QEMU makes the tap itself (no `ip tuntap add`): it is QEMU's, and goes away with it.
      const nsPath = netns === undefined ? undefined : await makeVmNetns(netns, cacheDir, id, life.signal);
      vm = await deps.hypervisor.startVm(
        {
          ...spec,
          id,
          vmDir: paths.vmDir,
          sharedDir: share.paths.shared,
          guard: { controlSocket: paths.controlSocket },
          ...(nsPath === undefined ? {} : { netnsPath: nsPath, nics: [templateNic] }),
        },
        life.signal,
      );
      const booted = vm;
      await agentAnswersThenLetGo(booted, spec.bootTimeoutMs, vlog, life.signal, async (agent) =>
        opts.warmup === undefined ? "none" : opts.warmup(share, path.join(cacheDir, "scratch", id), agent, life.signal),
      );
      if (!pool.booted(id, true)) throw new KataError(Code.Cancelled, "the VM cache is stopping");
      const entry = { id, vm: booted, share };
      entries.set(id, entry);
      failures = 0;
      vlog.info("cached VM ready", { pid: booted.pid, ready: pool.status().ready });
      void booted.exited.then(async () => {
        // Died while cached (handed-out VMs are watched by their hand-out).
        if (pool.state(id) === "ready") {
          await dropEntry(entry, "its QEMU exited while cached");
          pump();
        }
      });
      wake();
    } catch (e) {
      if (pool.state(id) === "booting") pool.booted(id, false);
      await vm?.stop().catch((err: unknown) => {
        vlog.warn("stop a cached VM that did not boot", { err: errField(err) });
      });
      await share.teardown().catch((err: unknown) => {
        vlog.warn("remove a cached VM's share", { err: errField(err) });
      });
      await dropNetns(id);
      if (life.signal.aborted) return;
      failures++;
      vlog.warn("a cached VM did not boot", { err: errField(e), failures });
      await delay(bootRetryMs[Math.min(failures, bootRetryMs.length) - 1] ?? 60_000, life.signal).catch(
        (err: unknown) => {
          vlog.debug("boot retry wait ended", { err: errField(err) });
        },
      );
    }
  };

  function pump(): void {
    for (const id of pool.refill()) {
      const p = boot(id).finally(() => {
        boots.delete(p);
        if (!life.signal.aborted) pump();
      });
      boots.add(p);
    }
  }

  /** The VM handed out: adopted (its guard let us go) or stopped once adoptWindowMs passed. */
  const watchHandout = async (e: Entry): Promise<void> => {
    const seen = { adopted: false };
    void e.vm.owner?.adopted.then(() => {
      seen.adopted = true;
    });
    const window = deadline(adoptWindowMs, life.signal);
    try {
      await new Promise<void>((resolve) => {
        void e.vm.exited.then(() => {
          resolve();
        });
        window.signal.addEventListener("abort", () => {
          resolve();
        });
      });
    } finally {
      window.clear();
    }
    // Stopping while a sandbox takes it over: let a handoff under way finish rather than pull the VM
    // from under it.
    if (life.signal.aborted) await settlesWithin(e.vm.exited, stopAdoptGraceMs);
    // "A" (adopted) comes before the guard closes our lifeline: by the time exited resolved, it was seen.
    await delay(0);
    if (seen.adopted) {
      entries.delete(e.id);
      pool.forget(e.id);
      log.info("cached VM taken over", { vm: e.id });
      // Its tap is in the pod's netns by now, or stays in this one until its QEMU exits: only the name goes.
      await dropNetns(e.id);
      return;
    }
    e.vm.owner?.letGo();
    await dropEntry(e, "not taken over in time");
    await rm(cacheVmPaths(cacheDir, e.id).vmDir, { recursive: true, force: true });
  };

  const takeReady = async (cancelled: AbortSignal): Promise<Entry | undefined> => {
    for (;;) {
      const id = pool.take();
      if (id !== undefined) {
        pump();
        // CAST: a ready id always has its entry (set before pool.booted made it ready... see boot()).
        return entries.get(id);
      }
      if (cancelled.aborted || pool.status().quitting) return undefined;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          waiters.delete(done);
          cancelled.removeEventListener("abort", done);
          resolve();
        };
        waiters.add(done);
        cancelled.addEventListener("abort", done, { once: true });
      });
    }
  };

  // Requests are Empty: nothing larger than our decoder's limit is read off the socket.
  const server = new Server({
    "grpc.max_receive_message_length": maxCacheMessageBytes,
    "grpc.max_send_message_length": maxCacheMessageBytes,
  });
  const empty = protoCodec(EmptySchema);
  const method = <O extends Parameters<typeof protoCodec>[0]>(name: string, output: O) => ({
    path: `/${CacheService.typeName}/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: empty.serialize,
    requestDeserialize: empty.deserialize,
    responseSerialize: protoCodec(output).serialize,
    responseDeserialize: protoCodec(output).deserialize,
  });
  const definition = {
    Config: method("Config", GrpcVMConfigSchema),
    GetBaseVM: method("GetBaseVM", GrpcVMSchema),
    Status: method("Status", GrpcStatusSchema),
    Quit: method("Quit", EmptySchema),
  } as unknown as ServiceDefinition;
  type Reply = (err: { code: number; details: string } | null, value?: unknown) => void;
  type Call = { on(ev: "cancelled", f: () => void): void };
  server.addService(definition, {
    Config: (_call: Call, reply: Reply) => {
      reply(null, create(GrpcVMConfigSchema, { Data: encodeCacheRecord(record) }));
    },
    GetBaseVM: (call: Call, reply: Reply) => {
      const cancelled = new AbortController();
      call.on("cancelled", () => {
        cancelled.abort();
      });
      void (async () => {
        const e = await takeReady(cancelled.signal);
        if (e === undefined) {
          reply({ code: status.UNAVAILABLE, details: "the VM cache is stopping or the call was cancelled" });
          return;
        }
        if (cancelled.signal.aborted) {
          await dropEntry(e, "its caller went away");
          pump();
          return;
        }
        await e.vm.release?.();
        const h = watchHandout(e);
        handouts.add(h);
        void h.finally(() => handouts.delete(h));
        reply(null, encodeCachedVm({ id: e.id, pid: e.vm.pid, vcpus: spec.vcpus, memoryMiB: spec.memoryMiB }));
      })();
    },
    Status: (_call: Call, reply: Reply) => {
      const vmstatus = pool
        .readyIds()
        .map((id) => entries.get(id))
        .filter((e): e is Entry => e !== undefined)
        .map((e) => create(GrpcVMStatusSchema, { pid: BigInt(e.vm.pid), cpu: spec.vcpus, memory: spec.memoryMiB }));
      reply(null, create(GrpcStatusSchema, { pid: BigInt(process.pid), vmstatus }));
    },
    Quit: (_call: Call, reply: Reply) => {
      reply(null, create(EmptySchema));
      setTimeout(() => void stop("Quit"), quitAfterMs);
    },
  });

  let stopping: Promise<void> | undefined;
  const stop = (why: string): Promise<void> => {
    stopping ??= (async () => {
      log.info("vm cache server stopping", { why });
      const left = pool.quit();
      life.abort(new KataError(Code.Cancelled, `the VM cache is stopping (${why})`));
      wake();
      server.forceShutdown();
      await Promise.allSettled([...boots, ...handouts]);
      for (const id of left) {
        const e = entries.get(id);
        if (e !== undefined) await dropEntry(e, "the VM cache stopped");
      }
      await unlink(endpoint).catch(ignoreErrno("ENOENT"));
      await removeCacheDir(deps, cacheDir);
      log.info("vm cache server stopped");
      stopped.resolve(undefined);
    })();
    return stopping;
  };

  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${endpoint}`, ServerCredentials.createInsecure(), (err) => {
      if (err !== null) reject(wrap(err, `listen on ${endpoint}`));
      else resolve();
    });
  }).catch(async (e: unknown) => {
    await removeCacheDir(deps, cacheDir);
    throw e;
  });
  await chmod(endpoint, 0o600);
  log.info("vm cache server listening", { size: opts.size });
  opts.onListening?.();
  if (signal.aborted) void stop("signal");
  else signal.addEventListener("abort", () => void stop("signal"), { once: true });
  pump();
  await stopped.promise;
}
