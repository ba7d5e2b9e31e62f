// The sandbox's side of the VM cache (Kata's grpccache client, docs/factory.md#vm-cache): asks the cache
// server for a pre-booted VM and takes it over: its lifetime (a new lifeline to its guard), its
// directory (sockets, console log) and its share (renamed to the sandbox's), then its QMP and console.
// Anything short of a VM that fits is a warning and a direct boot; once the VM is ours, a failure stops
// it (letting go of the lifeline) before the sandbox boots directly.

import { mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Client, ServiceError } from "@grpc/grpc-js";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { Code, KataError, ignoreErrno, wrap } from "../base/errors.js";
import { errField, type Logger } from "../base/log.js";
import type { Vm, VmConfig } from "../hypervisor/hypervisor.js";
import type { ProcessRunner } from "../platform/process.js";
import { adoptGuardedVm, type Lifeline } from "../platform/vm-guard.js";
import { CacheService, type GrpcStatus, type GrpcVM, type GrpcVMConfig } from "../protocol/gen/cache_pb.js";
import { teardownShare } from "../storage/shared-dir.js";
import { holdVmNetns, moveCachedTap } from "./cache-net.js";
import { cacheTapPlan, type CacheTapPlan, type PodLink } from "./cache-net-plan.js";
import { cloneNics, type NicMacChange } from "./template-plan.js";
import {
  type CachedVmInfo,
  type CacheVmPaths,
  cacheDirOf,
  cacheMismatches,
  parseCachedVm,
  maxCacheMessageBytes,
  parseCacheRecord,
  protoCodec,
} from "./cache-wire.js";
import { templateRequest, type TemplateDeps } from "./template.js";

/** How long Config may take: the server answers it from memory. */
export const cacheConfigTimeoutMs = 2000;
/** How long a sandbox waits for a VM when none is ready (one may be booting); then it boots directly. */
export const cacheGetTimeoutMs = 10_000;
/** How long the VM's guard may take to accept the sandbox as its owner. */
const adoptTimeoutMs = 5000;

type CallOpts = { readonly timeoutMs: number; readonly signal?: AbortSignal };

type Grpc = typeof import("@grpc/grpc-js");

/** A gRPC client of cache.CacheService on a unix socket. */
export class CacheClient {
  readonly #client: Client;
  readonly #grpc: Grpc;

  private constructor(grpc: Grpc, endpoint: string) {
    this.#grpc = grpc;
    // grpc-js would take 4 MiB before our decoder's 64 KiB check: the channel refuses more at once.
    this.#client = new grpc.Client(`unix://${endpoint}`, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": maxCacheMessageBytes,
      "grpc.max_send_message_length": maxCacheMessageBytes,
    });
  }

  /** grpc-js is loaded only when a VM cache is used: it is much of a short verb's start otherwise. */
  static async open(endpoint: string): Promise<CacheClient> {
    return new CacheClient(await import("@grpc/grpc-js"), endpoint);
  }

  config(o: CallOpts): Promise<GrpcVMConfig> {
    return this.#call("Config", CacheService.method.config.output, o);
  }

  getBaseVM(o: CallOpts): Promise<GrpcVM> {
    return this.#call("GetBaseVM", CacheService.method.getBaseVM.output, o);
  }

  status(o: CallOpts): Promise<GrpcStatus> {
    return this.#call("Status", CacheService.method.status.output, o);
  }

  async quit(o: CallOpts): Promise<void> {
    await this.#call("Quit", EmptySchema, o);
  }

  close(): void {
    this.#client.close();
  }

  #call<O extends DescMessage>(name: string, output: O, o: CallOpts): Promise<MessageShape<O>> {
    const method = `/${CacheService.typeName}/${name}`;
    const req = protoCodec(EmptySchema);
    const res = protoCodec(output);
    return new Promise((resolve, reject) => {
      if (o.signal?.aborted === true) {
        reject(new KataError(Code.Cancelled, `vm cache ${name}: cancelled`));
        return;
      }
      const call = this.#client.makeUnaryRequest(
        method,
        req.serialize,
        res.deserialize,
        create(EmptySchema),
        new this.#grpc.Metadata(),
        { deadline: Date.now() + o.timeoutMs },
        (err: ServiceError | null, value?: MessageShape<O>) => {
          o.signal?.removeEventListener("abort", onAbort);
          if (err !== null) {
            reject(new KataError(grpcCode(this.#grpc, err.code), `vm cache ${name}: ${err.details || err.message}`));
          } else if (value === undefined) reject(new KataError(Code.Internal, `vm cache ${name}: no answer`));
          else resolve(value);
        },
      );
      const onAbort = (): void => {
        call.cancel();
      };
      o.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

/** gRPC status numbers to our codes (the same names); the rest: UNAVAILABLE (the cache cannot be used). */
function grpcCode(grpc: Grpc, n: number): Code {
  const { status } = grpc;
  const byNumber: Readonly<Record<number, Code>> = {
    [status.CANCELLED]: Code.Cancelled,
    [status.INVALID_ARGUMENT]: Code.InvalidArgument,
    [status.DEADLINE_EXCEEDED]: Code.DeadlineExceeded,
    [status.NOT_FOUND]: Code.NotFound,
    [status.ALREADY_EXISTS]: Code.AlreadyExists,
    [status.RESOURCE_EXHAUSTED]: Code.ResourceExhausted,
    [status.FAILED_PRECONDITION]: Code.FailedPrecondition,
    [status.UNIMPLEMENTED]: Code.Unimplemented,
    [status.INTERNAL]: Code.Internal,
  };
  return byNumber[n] ?? Code.Unavailable;
}

export interface CacheClientDeps extends TemplateDeps {
  readonly runner: ProcessRunner;
  /** native/kata-ts-vmguard. */
  readonly vmGuard: string;
}

/** Where a cached VM comes from: `getVm` resolves undefined (warning logged) whenever it cannot be used. */
export class CacheVmSource {
  readonly #deps: CacheClientDeps;

  constructor(deps: CacheClientDeps) {
    this.#deps = deps;
  }

  /**
   * `links`: the pod's interfaces and the taps its network setup made for them in `config.netnsPath`
   * (config.nics, in the same order); a cached VM's tap takes the place of the first.
   */
  async getVm(
    endpoint: string,
    config: VmConfig,
    signal: AbortSignal,
    links: readonly PodLink[] = [],
  ): Promise<{ readonly vm: Vm; readonly nicMacChanges: readonly NicMacChange[] } | undefined> {
    const log = this.#deps.logger.child({ sandboxId: config.id, endpoint });
    const { hypervisor } = this.#deps;
    if (config.binaryPath === undefined || config.sharedDir === undefined || hypervisor.adoptVm === undefined) {
      log.warn("vm factory: this VM cannot come from the VM cache; booting directly");
      return undefined;
    }
    // The VM's directories are renamed into the sandbox's: a rename cannot cross file systems.
    const [from, to] = await Promise.all([
      stat(cacheDirOf(endpoint)).catch(ignoreErrno("ENOENT")),
      stat(path.dirname(path.dirname(config.sharedDir))),
    ]);
    if (from !== undefined && from.dev !== to.dev) {
      log.warn("vm factory: the VM cache's directory and --root are on different file systems; booting directly", {
        cacheDir: cacheDirOf(endpoint),
      });
      return undefined;
    }
    const client = await CacheClient.open(endpoint);
    let taken, rec, held;
    let tap: CacheTapPlan;
    try {
      rec = parseCacheRecord((await client.config({ timeoutMs: cacheConfigTimeoutMs, signal })).Data);
      // The cached VM's tap is in its own netns, never the sandbox's: whether the sandbox has one does not matter.
      const req = await templateRequest(this.#deps, { ...config, binaryPath: config.binaryPath }, config.nics, true);
      const mismatches = cacheMismatches(rec, req);
      if (mismatches.length > 0) {
        log.warn("vm factory: the cached VMs do not match this sandbox; booting directly", {
          mismatches: mismatches.join("; "),
        });
        return undefined;
      }
      tap = cacheTapPlan(rec.nics ?? [], links, config.netnsPath);
      if (tap.kind === "move" && this.#deps.netns === undefined) {
        tap = { kind: "refuse", reason: "network namespaces cannot be entered here" };
      }
      if (tap.kind === "refuse") {
        log.warn("vm factory: a cached VM's NIC cannot serve this pod; booting directly", { reason: tap.reason });
        return undefined;
      }
      taken = parseCachedVm(await client.getBaseVM({ timeoutMs: cacheGetTimeoutMs, signal }), cacheDirOf(endpoint));
      // Before the VM is ours: once it is, its server may remove the netns's name.
      if (tap.kind === "move") held = await holdVmNetns(cacheDirOf(endpoint), taken.id);
    } catch (e) {
      if (signal.aborted) throw e;
      log.warn("vm factory: no VM from the VM cache; booting directly", { err: errField(e) });
      return undefined;
    } finally {
      client.close();
    }
    try {
      const vm = await this.#takeOver(taken, config, { tap, held, signal, log });
      return vm === undefined
        ? undefined
        : { vm, nicMacChanges: tap.kind === "move" ? cloneNics(rec, config.nics ?? []).macChanges : [] };
    } finally {
      await held?.close();
    }
  }

  /** Adopts the handed-out VM and moves it in (its tap, its directories); undefined: boot directly. */
  async #takeOver(
    taken: CachedVmInfo & CacheVmPaths,
    config: VmConfig & { sharedDir?: string },
    o: { tap: CacheTapPlan; held: { path: string } | undefined; signal: AbortSignal; log: Logger },
  ): Promise<Vm | undefined> {
    const { signal, log } = o;
    const sharedDir = config.sharedDir;
    if (sharedDir === undefined) throw new KataError(Code.Internal, "a sandbox from the VM cache has no share");
    let life: Lifeline;
    try {
      life = await adoptGuardedVm(this.#deps.runner, this.#deps.vmGuard, taken.controlSocket, adoptTimeoutMs, signal);
    } catch (e) {
      if (signal.aborted) throw e;
      log.warn("vm factory: could not take over the cached VM; booting directly", { err: errField(e), vm: taken.id });
      return undefined;
    }
    try {
      if (o.tap.kind === "move" && o.held !== undefined && this.#deps.netns !== undefined) {
        // CAST: a "move" plan needs the sandbox's netns (cacheTapPlan).
        const pod = config.netnsPath as string;
        const t0 = performance.now();
        await moveCachedTap(this.#deps.netns, { cache: o.held.path, pod }, o.tap.steps, signal);
        log.info("vm factory: the cached VM's tap moved into the pod's netns", {
          vm: taken.id,
          ms: Math.round(performance.now() - t0),
        });
      }
      const vm = await this.#moveIn(taken, life, { ...config, sharedDir }, signal);
      log.info("vm factory: took a VM from the VM cache", { vm: taken.id, pid: vm.pid });
      return vm;
    } catch (e) {
      life.kill();
      await life.exited;
      // Whichever of its directories did not move yet is ours to remove (what moved, the sandbox's undo removes).
      const warn = (what: string) => (err: unknown) => {
        this.#deps.logger.warn(`vm factory: ${what}`, { sandboxId: config.id, err: errField(err) });
      };
      await teardownShare(this.#deps, { root: taken.shareRoot, mounts: "", shared: "" }).catch(
        warn("remove the cached VM's share"),
      );
      await rm(taken.vmDir, { recursive: true, force: true }).catch(warn("remove the cached VM's directory"));
      if (signal.aborted) throw e;
      throw wrap(e, `take over cached VM ${taken.id}`);
    }
  }

  /**
   * Renames the VM's directory and share to the sandbox's (the share's mounts move with their parent:
   * QEMU's 9p export keeps working), then connects to its QMP and console.
   */
  async #moveIn(
    taken: { id: string; vmDir: string; shareRoot: string },
    life: Lifeline,
    config: VmConfig & { sharedDir: string },
    signal: AbortSignal,
  ): Promise<Vm> {
    const shareRoot = path.dirname(config.sharedDir);
    if (path.basename(config.sharedDir) !== "shared") {
      throw new KataError(Code.Internal, `sandbox share ${config.sharedDir} is not a share's shared/`);
    }
    await teardownShare(this.#deps, { root: shareRoot, mounts: "", shared: config.sharedDir });
    await rename(taken.shareRoot, shareRoot);
    await mkdir(path.dirname(config.vmDir), { recursive: true, mode: 0o700 });
    await rename(taken.vmDir, config.vmDir);
    const { hypervisor } = this.#deps;
    if (hypervisor.adoptVm === undefined) throw new KataError(Code.Unimplemented, "the hypervisor cannot adopt a VM");
    return hypervisor.adoptVm(
      {
        id: config.id,
        vmDir: config.vmDir,
        machineType: config.machineType,
        child: life,
        ...(config.onConsoleLine === undefined ? {} : { onConsoleLine: config.onConsoleLine }),
      },
      signal,
    );
  }
}
