// ttRPC adapters of the agent: each handler validates nothing itself and calls the Agent, so the wire
// mapping stays in the ttRPC server (toWireStatus) and the logic in agent.ts.

import { KataError, Code } from "../base/errors.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { InterfaceSchema } from "../protocol/gen/types_pb.js";
import type { TtrpcServer } from "../protocol/ttrpc/server.js";
import {
  AgentService,
  type AddARPNeighborsRequest,
  type UpdateInterfaceRequest,
  type UpdateRoutesRequest,
} from "../protocol/gen/agent_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../protocol/gen/health_pb.js";
import type { Agent } from "./agent.js";
import type { GuestInterface, GuestNetwork } from "./network.js";

/** Largest chunk one ReadStdout/ReadStderr returns: well under the 4 MiB frame limit. */
export const maxReadChunkBytes = 1 << 20;
/** Largest WriteStdin payload accepted. */
export const maxWriteChunkBytes = 1 << 20;
/** Largest ReseedRandomDev seed (what kata-ts-reseed reads). */
export const maxReseedBytes = 4096;

export interface ServiceDeps {
  /** `ps` output of the whole guest (header line first), for ListProcesses "table". */
  /** Runs the guest's ps with these (checked) options; without any, kata-ts's own columns. */
  readonly runPs: (args: readonly string[]) => Promise<string>;
  /** Sets the guest clock (SetGuestDateTime): a VM restored from a template carries a stale one. */
  readonly setTime: (sec: bigint, usec: bigint) => Promise<void>;
  /** Mixes host seed into the guest CRNG and reseeds it (ReseedRandomDev); absent: UNIMPLEMENTED. */
  readonly reseed?: (seed: Uint8Array) => Promise<void>;
  /** The pod's interfaces, routes and neighbours; without it those RPCs answer UNIMPLEMENTED. */
  readonly network?: GuestNetwork;
  /** Brings hot-added CPUs and memory online (OnlineCPUMem, see hotplug.ts); absent: UNIMPLEMENTED. */
  readonly onlineCpuMem?: (req: { nbCpus: number; cpuOnly: boolean }, signal: AbortSignal) => Promise<unknown>;
}

/**
 * A session number as HealthCheckResponse.session carries it: a uint32, never 0 (an agent that does not
 * say). It wraps after 2^32 - 1 sessions (the agent waiting for a host opens twenty a second: years),
 * which no handshake spans.
 */
export function sessionOnWire(connection: number): number {
  return ((connection - 1) % 0xffff_ffff) + 1;
}

/**
 * Health, as the host's readiness probe needs it: each answer names the port session (the server's
 * connection) it came on, so the host can tell a session that lasts from one the agent is about to end
 * (agent-client.ts waitReady).
 */
export function registerHealth(server: TtrpcServer, version: string): void {
  server.register(Health, {
    check: (_req, ctx) =>
      Promise.resolve({ status: HealthCheckResponse_ServingStatus.SERVING, session: sessionOnWire(ctx.connection) }),
    version: () => Promise.resolve({ grpcVersion: "ttrpc", agentVersion: version }),
  });
}

export function registerAgentService(server: TtrpcServer, agent: Agent, version: string, deps: ServiceDeps): void {
  registerHealth(server, version);
  server.register(AgentService, {
    createSandbox: async (req) => {
      await agent.createSandbox(req);
      return {};
    },
    destroySandbox: async () => {
      await agent.destroySandbox();
      return {};
    },
    createContainer: async (req) => {
      await agent.createContainer(req);
      return {};
    },
    startContainer: async (req) => {
      await agent.startContainer(req.containerId);
      return {};
    },
    removeContainer: async (req) => {
      await agent.removeContainer(req.containerId, req.timeout);
      return {};
    },
    signalProcess: async (req) => {
      await agent.signalProcess(req.containerId, req.execId, req.signal);
      return {};
    },
    waitProcess: async (req, ctx) => ({
      status: await agent.process(req.containerId, req.execId).wait(ctx.signal),
    }),
    readStdout: async (req, ctx) => ({
      data: await agent.process(req.containerId, req.execId).stdout.read(readLength(req.len), ctx.signal),
    }),
    readStderr: async (req, ctx) => ({
      data: await agent.process(req.containerId, req.execId).stderr.read(readLength(req.len), ctx.signal),
    }),
    writeStdin: async (req, ctx) => {
      if (req.data.length > maxWriteChunkBytes) {
        throw new KataError(
          Code.ResourceExhausted,
          `write stdin: ${req.data.length} bytes exceeds ${maxWriteChunkBytes}`,
        );
      }
      return { len: await agent.process(req.containerId, req.execId).writeStdin(req.data, ctx.signal) };
    },
    execProcess: async (req) => {
      await agent.execProcess(req);
      return {};
    },
    listProcesses: async (req) => ({
      processList: await agent.listProcesses(req.containerId, req.format, deps.runPs, req.args),
    }),
    pauseContainer: async (req) => {
      await agent.pauseContainer(req.containerId);
      return {};
    },
    resumeContainer: async (req) => {
      await agent.resumeContainer(req.containerId);
      return {};
    },
    updateContainer: async (req) => {
      await agent.updateContainer(req.containerId, req.resources);
      return {};
    },
    statsContainer: async (req) => ({ cgroupStats: await agent.statsContainer(req.containerId) }),
    setGuestDateTime: async (req) => {
      await deps.setTime(req.Sec, req.Usec);
      return {};
    },
    reseedRandomDev: async (req) => {
      if (deps.reseed === undefined) throw new KataError(Code.Unimplemented, "reseed: no helper in this guest image");
      if (req.data.length < 1 || req.data.length > maxReseedBytes) {
        throw new KataError(Code.InvalidArgument, `reseed: ${req.data.length} bytes, must be 1..${maxReseedBytes}`);
      }
      await deps.reseed(req.data);
      return {};
    },
    onlineCPUMem: async (req, ctx) => {
      if (deps.onlineCpuMem === undefined) throw new KataError(Code.Unimplemented, "online cpu and memory: not here");
      await deps.onlineCpuMem({ nbCpus: req.nbCpus, cpuOnly: req.cpuOnly }, ctx.signal);
      return {};
    },
    getOOMEvent: async (_req, ctx) => ({ containerId: await agent.nextOomEvent(ctx.signal) }),
    ttyWinResize: async (req) => {
      await agent.resizeTerminal(req.containerId, req.execId, req.row, req.column);
      return {};
    },
    ...(deps.network === undefined ? {} : networkHandlers(deps.network)),
    closeStdin: (req) => {
      agent.process(req.containerId, req.execId).closeStdin();
      return Promise.resolve({});
    },
  });
}

function networkHandlers(net: GuestNetwork) {
  return {
    updateInterface: async (req: UpdateInterfaceRequest) => {
      if (req.interface === undefined) throw new KataError(Code.InvalidArgument, "interface: missing");
      return wireInterface(await net.updateInterface(req.interface));
    },
    updateRoutes: async (req: UpdateRoutesRequest) => ({
      Routes: await net.updateRoutes(req.routes?.Routes ?? []),
    }),
    addARPNeighbors: async (req: AddARPNeighborsRequest) => {
      await net.addArpNeighbors(req.neighbors?.ARPNeighbors ?? []);
      return {};
    },
    listInterfaces: async () => ({ Interfaces: (await net.listInterfaces()).map(wireInterface) }),
    listRoutes: async () => ({ Routes: await net.listRoutes() }),
  };
}

function wireInterface(i: GuestInterface): MessageInitShape<typeof InterfaceSchema> {
  return { ...i, IPAddresses: [...i.IPAddresses] };
}

function readLength(len: number): number {
  return len === 0 ? maxReadChunkBytes : Math.min(len, maxReadChunkBytes);
}
