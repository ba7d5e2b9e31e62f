// Fault injection for the fake VM's agent: faults on AgentService methods, armed by a test on the
// FakeHypervisor and applied by every VM it starts, and a ttRPC server that lets the VM wrap every call
// (to apply them, and to hold answers while the VM is frozen).

import type { DescMessage } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { deferred } from "../../src/base/async.js";
import type { KataError } from "../../src/base/errors.js";
import type { AgentService } from "../../src/protocol/gen/agent_pb.js";
import {
  TtrpcServer,
  type Handler,
  type ServiceImpl,
  type TtrpcServerOptions,
} from "../../src/protocol/ttrpc/server.js";

/** An AgentService method, as protobuf-es names it: "createContainer", "waitProcess", ... */
export type AgentMethod = keyof (typeof AgentService)["method"];

/**
 * What a fault does to a call:
 * - error: the call fails with `error` (its code and message reach the host as the agent's would);
 * - hang: the call is never answered; it ends only when its connection closes;
 * - delay: the call is answered `ms` late;
 * - exitVm: the VM dies during the call (the host sees its connection close, then the VM's exit);
 * - pause: the call is held until the test calls release() (see RpcFaultHandle.reached).
 */
export type RpcFault =
  | { readonly kind: "error"; readonly error: KataError }
  | { readonly kind: "hang" }
  | { readonly kind: "delay"; readonly ms: number }
  | { readonly kind: "exitVm" }
  | { readonly kind: "pause" };

export interface RpcFaultOptions {
  /** Calls of the method that go through untouched first (default 0): "after N calls of M". */
  readonly afterCalls?: number;
  /** How many calls the fault catches after those (default: all of them). */
  readonly times?: number;
  /**
   * "before" (default): the agent never sees a caught call. "after": the agent handles it and the fault
   * applies to its answer (the guest did it, the host does not hear so).
   */
  readonly stage?: "before" | "after";
}

export interface RpcFaultHandle {
  /** Calls the fault has caught so far. */
  readonly hits: number;
  /** Resolves when the fault catches its first call (for "pause": that call is now held). */
  readonly reached: Promise<void>;
  /** Disarms the fault; calls held by "pause" go on to the agent (or to their answer). */
  release(): void;
}

/** An armed fault, as a VM applies it to one call. */
export interface CaughtCall {
  readonly fault: RpcFault;
  readonly stage: "before" | "after";
  /** For "pause": resolves when the test releases the fault. */
  readonly released: Promise<void>;
}

class ArmedFault implements RpcFaultHandle {
  readonly method: AgentMethod;
  readonly fault: RpcFault;
  readonly stage: "before" | "after";
  hits = 0;
  #seen = 0;
  #armed = true;
  readonly #afterCalls: number;
  readonly #times: number;
  readonly #reached = deferred<undefined>();
  readonly #released = deferred<undefined>();

  constructor(method: AgentMethod, fault: RpcFault, opts: RpcFaultOptions) {
    this.method = method;
    this.fault = fault;
    this.stage = opts.stage ?? "before";
    this.#afterCalls = opts.afterCalls ?? 0;
    this.#times = opts.times ?? Infinity;
  }

  get reached(): Promise<void> {
    return this.#reached.promise;
  }

  get released(): Promise<void> {
    return this.#released.promise;
  }

  get armed(): boolean {
    return this.#armed;
  }

  /** Counts a call of the method; true when this fault catches it. */
  catches(): boolean {
    if (!this.#armed) return false;
    this.#seen++;
    if (this.#seen <= this.#afterCalls || this.hits >= this.#times) return false;
    this.hits++;
    this.#reached.resolve(undefined);
    return true;
  }

  release(): void {
    this.#armed = false;
    this.#released.resolve(undefined);
  }
}

/** The faults armed on a hypervisor; every VM it starts asks them about each AgentService call. */
export class RpcFaults {
  readonly #faults: ArmedFault[] = [];

  arm(method: AgentMethod, fault: RpcFault, opts: RpcFaultOptions = {}): RpcFaultHandle {
    const f = new ArmedFault(method, fault, opts);
    this.#faults.push(f);
    return f;
  }

  /** Counts a call of `method` on every fault armed for it; the first that catches it applies. */
  match(method: string): CaughtCall | undefined {
    let caught: ArmedFault | undefined;
    for (const f of this.#faults) {
      if (f.method !== method || !f.armed) continue;
      if (f.catches() && caught === undefined) caught = f;
    }
    return caught === undefined ? undefined : { fault: caught.fault, stage: caught.stage, released: caught.released };
  }
}

/** Wraps one call: runs `call` (the real handler) when and if it sees fit. */
export type Interceptor = <T>(
  op: { readonly service: string; readonly method: string },
  call: () => Promise<T>,
) => Promise<T>;

/** A ttRPC server whose every handler runs through `intercept`. */
export class InterceptingServer extends TtrpcServer {
  readonly #intercept: Interceptor;

  constructor(intercept: Interceptor, opts: TtrpcServerOptions = {}) {
    super(opts);
    this.#intercept = intercept;
  }

  override register<S extends GenServiceMethods>(service: GenService<S>, impl: Partial<ServiceImpl<S>>): void {
    // CAST: as in TtrpcServer.register, a Partial<ServiceImpl<S>> is a record of optional handlers keyed
    // by method localName.
    const handlers = impl as Readonly<Record<string, Handler<DescMessage, DescMessage> | undefined>>;
    const wrapped: Record<string, Handler<DescMessage, DescMessage>> = {};
    for (const [method, handler] of Object.entries(handlers)) {
      if (handler === undefined) continue;
      wrapped[method] = (request, ctx) =>
        this.#intercept({ service: service.typeName, method }, () => handler.call(impl, request, ctx));
    }
    // CAST: each wrapper has its handler's type under the same key; only the record's key typing is lost.
    super.register(service, wrapped as Partial<ServiceImpl<S>>);
  }
}
