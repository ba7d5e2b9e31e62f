// A fake hypervisor for component tests: its "VM" is the real guest Agent with the real ttRPC adapters
// (registerAgentService), a FakeCrun and a FakeStorage, served on a real unix socket at
// <vmDir>/agent.sock. The host side (agent client, Sandbox, Pod, task service) runs unchanged against
// it, in milliseconds, without QEMU, root or mounts. Nothing here proves anything about QEMU.
//
// A fake VM's pid is from nextFakePid(): no process can have it, so stale cleanup never matches it and
// a kill(2) of it gets ESRCH. Its console holds the agent's log lines (and the VM's own events).

import { mkdir, rm } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { abortError, deferred, delay, raceAbort } from "../../src/base/async.js";
import { Code, KataError } from "../../src/base/errors.js";
import { Agent } from "../../src/guest/agent.js";
import { GuestNetwork } from "../../src/guest/network.js";
import { registerAgentService } from "../../src/guest/service.js";
import { FakeGuestNet } from "./fake-guest-net.js";
import type { Hypervisor, Vm, VmConfig } from "../../src/hypervisor/hypervisor.js";
import type { ExitStatus } from "../../src/platform/process.js";
import { AgentService } from "../../src/protocol/gen/agent_pb.js";
import { FakeCrun } from "./fake-crun.js";
import { InterceptingServer, RpcFaults, type AgentMethod, type CaughtCall } from "./fake-faults.js";
import type { RpcFault, RpcFaultHandle, RpcFaultOptions } from "./fake-faults.js";
import { FakeStorage } from "./fake-storage.js";
import { LineLogger, nextFakePid } from "./fakes.js";

/**
 * What startVm does instead of a normal boot:
 * - fail: startVm rejects with `error` and leaves nothing (no VM directory);
 * - hang: startVm waits until its signal aborts (a hypervisor that never answers QMP);
 * - exitDuringBoot: startVm succeeds, then the VM exits before its agent ever listens;
 * - frozen: the agent socket accepts connections and never answers (a SIGSTOPped VM).
 */
export type StartFault =
  | { readonly kind: "fail"; readonly error: KataError }
  | { readonly kind: "hang" }
  | { readonly kind: "exitDuringBoot"; readonly status?: ExitStatus }
  | { readonly kind: "frozen" };

export class FakeVm implements Vm {
  readonly id: string;
  readonly pid = nextFakePid();
  readonly config: VmConfig;
  readonly agentSocketPath: string;
  /** Not written: the console is in `console`. */
  readonly consoleLogPath: string;
  readonly exited: Promise<ExitStatus>;
  /** Console lines: the VM's events and the agent's log. */
  readonly console: string[] = [];
  /** Seeds the guest was given (ReseedRandomDev), and clock settings (SetGuestDateTime, seconds). */
  readonly reseeds: Uint8Array[] = [];
  readonly clockSets: bigint[] = [];
  readonly crun = new FakeCrun();
  /** The guest's links and routes, as busybox ip would change them. */
  readonly net = new FakeGuestNet();
  readonly network: GuestNetwork;
  readonly storage = new FakeStorage();
  readonly agent: Agent;
  /** OnlineCPUMem calls the guest got. */
  readonly onlined: { nbCpus: number; cpuOnly: boolean }[] = [];
  /** CPU and memory hotplug as a test scripts it; absent: this VM cannot (as microvm). */
  hotplugVcpu?: (signal: AbortSignal) => Promise<boolean>;
  hotplugMemory?: (sizeMiB: number, signal: AbortSignal) => Promise<string>;
  memoryTaken?: (deviceId: string, signal: AbortSignal) => Promise<void>;
  /** Set by the agent's SetHostname (CreateSandbox's hostname). */
  hostname: string | undefined;
  /** The VM's exit status once it exited (crashed, or stopped). */
  exitStatus: ExitStatus | undefined;
  #stopped = false;
  #stopping: Promise<void> | undefined;
  readonly #exit = deferred<ExitStatus>();
  readonly #faults: RpcFaults;
  readonly #server = net.createServer();
  readonly #sockets = new Set<net.Socket>();
  #listening = false;
  #frozen: boolean;
  readonly #channelListeners = new Set<() => void>();
  #thawed = deferred<undefined>();

  constructor(config: VmConfig, faults: RpcFaults, frozen: boolean) {
    this.id = config.id;
    this.config = config;
    this.agentSocketPath = path.join(config.vmDir, "agent.sock");
    this.consoleLogPath = path.join(config.vmDir, "console.log");
    this.exited = this.#exit.promise;
    this.#faults = faults;
    this.#frozen = frozen;
    const guest = path.join(config.vmDir, "guest");
    // The guest's NICs: one per NIC QEMU would have, with the MAC it was given.
    for (const [i, nic] of (config.nics ?? []).entries()) this.net.addLink(`eth${i}`, nic.mac);
    this.network = new GuestNetwork(this.net, new LineLogger(this.console, { fields: { component: "network" } }));
    this.agent = new Agent({
      crun: this.crun,
      storage: this.storage,
      logger: new LineLogger(this.console, { fields: { component: "agent" } }),
      setHostname: (name) => {
        this.hostname = name;
        return Promise.resolve();
      },
      bundlesDir: path.join(guest, "bundles"),
      cgroupRoot: path.join(guest, "cgroup"),
    });
    this.#server.on("connection", (socket) => {
      this.#serve(socket);
    });
  }

  /** True once stop() was called: the owner let it go. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Starts answering on the agent socket (the guest is up). */
  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.agentSocketPath, () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    this.#listening = true;
    this.console.push("fake VM: agent listening");
  }

  /**
   * The VM dies now (a crash, the OOM killer, a kill -9 of QEMU): every agent connection closes, the
   * containers' processes die, `exited` resolves. Its directory stays until stop(), as QEMU's would.
   */
  exit(status: ExitStatus = { code: null, signal: "SIGKILL" }): void {
    if (this.exitStatus !== undefined) return;
    this.exitStatus = status;
    this.console.push(`fake VM: exited (${status.signal ?? `code ${String(status.code)}`})`);
    if (this.#listening) this.#server.close();
    for (const s of this.#sockets) s.destroy();
    this.crun.killAll();
    this.#exit.resolve(status);
  }

  /**
   * The guest agent dies (init starts another): the guest closes its end of the agent channel, and
   * nothing the old agent was asked is answered, while the host's connection stays open (as QEMU's
   * chardev socket does).
   */
  agentExits(): void {
    this.console.push("fake VM: agent exited");
    this.freeze();
    for (const listener of [...this.#channelListeners]) listener();
  }

  onAgentChannelClosed(listener: () => void): () => void {
    this.#channelListeners.add(listener);
    return () => {
      this.#channelListeners.delete(listener);
    };
  }

  /** From now on the agent answers nothing (a SIGSTOPped VM); answers are held until thaw(). */
  freeze(): void {
    this.#frozen = true;
  }

  thaw(): void {
    this.#frozen = false;
    this.#thawed.resolve(undefined);
    this.#thawed = deferred<undefined>();
  }

  consoleTail(lines: number): Promise<string> {
    return Promise.resolve(this.console.slice(-lines).join("\n"));
  }

  pause(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) return Promise.reject(abortError(signal, `pause vm ${this.id}`));
    this.freeze();
    return Promise.resolve();
  }

  resume(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) return Promise.reject(abortError(signal, `resume vm ${this.id}`));
    this.thaw();
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.#stopped = true;
    this.#stopping ??= (async () => {
      this.exit({ code: 0, signal: null });
      await rm(this.config.vmDir, { recursive: true, force: true });
    })();
    return this.#stopping;
  }

  #serve(socket: net.Socket): void {
    this.#sockets.add(socket);
    const closed = new Promise<void>((resolve) => {
      socket.once("close", () => {
        this.#sockets.delete(socket);
        resolve();
      });
    });
    // One server per connection, so a call's wrapper knows when its own connection goes.
    const server = new InterceptingServer((op, call) => this.#intercept(op, call, closed));
    registerAgentService(server, this.agent, "kata-ts fake VM", {
      runPs: () => Promise.resolve(this.crun.psTable()),
      setTime: (sec) => {
        this.clockSets.push(sec);
        return Promise.resolve();
      },
      reseed: (seed) => {
        this.reseeds.push(seed);
        return Promise.resolve();
      },
      network: this.network,
      onlineCpuMem: (req) => {
        this.onlined.push(req);
        return Promise.resolve();
      },
    });
    void server.serve(socket);
  }

  async #intercept<T>(
    op: { service: string; method: string },
    call: () => Promise<T>,
    closed: Promise<void>,
  ): Promise<T> {
    const what = `${op.service}/${op.method}`;
    await this.#whileFrozen(what, closed);
    const caught = op.service === AgentService.typeName ? this.#faults.match(op.method) : undefined;
    if (caught?.stage === "before") await this.#apply(caught, what, closed);
    const out = await call();
    if (caught?.stage === "after") await this.#apply(caught, what, closed);
    await this.#whileFrozen(what, closed);
    return out;
  }

  async #whileFrozen(what: string, closed: Promise<void>): Promise<void> {
    while (this.#frozen) {
      if ((await Promise.race([this.#thawed.promise.then(() => "thawed"), closed])) !== "thawed") {
        throw gone(what);
      }
    }
  }

  async #apply(caught: CaughtCall, what: string, closed: Promise<void>): Promise<void> {
    const f = caught.fault;
    switch (f.kind) {
      case "error":
        throw f.error;
      case "hang":
        await closed;
        throw gone(what);
      case "delay":
        await delay(f.ms);
        return;
      case "exitVm":
        this.exit();
        throw gone(what);
      case "pause":
        if ((await Promise.race([caught.released.then(() => "released"), closed])) !== "released") throw gone(what);
        return;
    }
  }
}

/** A call whose connection went away: the ttRPC server drops its answer, so nobody sees this. */
function gone(what: string): KataError {
  return new KataError(Code.Cancelled, `${what}: the connection closed`);
}

export class FakeHypervisor implements Hypervisor {
  readonly name = "fake";
  /** Every VM started, in order, stopped or not. */
  readonly vms: FakeVm[] = [];
  /** The config of every startVm call, including those that failed. */
  readonly configs: VmConfig[] = [];
  /** Called with each new VM before its agent answers: to set up its crun or storage (faults, say). */
  onStart: ((vm: FakeVm) => void) | undefined;
  readonly #rpcFaults = new RpcFaults();
  readonly #startFaults: StartFault[] = [];

  /** Makes the next `times` startVm calls (default 1) go wrong as `fault` says. */
  startFault(fault: StartFault, opts: { times?: number } = {}): void {
    for (let i = 0; i < (opts.times ?? 1); i++) this.#startFaults.push(fault);
  }

  /** Arms a fault on an AgentService method for every VM of this hypervisor (see RpcFault). */
  rpcFault(method: AgentMethod, fault: RpcFault, opts: RpcFaultOptions = {}): RpcFaultHandle {
    return this.#rpcFaults.arm(method, fault, opts);
  }

  /** The last VM started (most tests have one). */
  get vm(): FakeVm {
    const vm = this.vms.at(-1);
    if (vm === undefined) throw new Error("the fake hypervisor has started no VM");
    return vm;
  }

  /** VMs started and never stopped: leaks. */
  notStopped(): FakeVm[] {
    return this.vms.filter((v) => !v.stopped);
  }

  async startVm(config: VmConfig, signal: AbortSignal): Promise<Vm> {
    this.configs.push(config);
    if (signal.aborted) throw abortError(signal, `start vm ${config.id}`);
    const fault = this.#startFaults.shift();
    if (fault?.kind === "fail") throw fault.error;
    await mkdir(config.vmDir, { recursive: true, mode: 0o700 });
    try {
      if (fault?.kind === "hang") await raceAbort(new Promise<never>(() => undefined), signal, `start vm ${config.id}`);
      const vm = new FakeVm(config, this.#rpcFaults, fault?.kind === "frozen");
      vm.console.push(`fake VM ${config.id}: booting`);
      this.onStart?.(vm);
      if (fault?.kind === "exitDuringBoot") {
        setImmediate(() => {
          vm.console.push("fake VM: kernel panic during boot");
          vm.exit(fault.status ?? { code: 1, signal: null });
        });
      } else {
        await vm.listen();
      }
      // Recorded once it is the caller's to stop: a VM that failed to start is not a leak.
      this.vms.push(vm);
      return vm;
    } catch (e) {
      await rm(config.vmDir, { recursive: true, force: true });
      throw e;
    }
  }
}
