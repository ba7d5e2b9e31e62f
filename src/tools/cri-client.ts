// A Container Runtime Interface client (runtime.v1) that makes the kubelet's calls to containerd's CRI
// plugin, for the Kubernetes integration test and the benchmark: gRPC over containerd's unix socket
// (grpc-js), messages encoded by protobuf-es from proto/k8s/cri/v1/api.proto. Every call has a
// deadline; a failed call throws a KataError coded from the gRPC status (details.wireCode) whose
// message is the method's path and containerd's text.

import { create, fromBinary, toBinary, type DescMethodUnary, type MessageInitShape } from "@bufbuild/protobuf";
import type { MessageShape } from "@bufbuild/protobuf";
import { Client, Metadata, credentials, type ServiceError } from "@grpc/grpc-js";
import { Code, KataError } from "../base/errors.js";
import { fromWireStatus } from "../protocol/ttrpc/status.js";
import {
  ImageService,
  RuntimeService,
  type Container,
  type ContainerConfigSchema,
  type ContainerFilterSchema,
  type ContainerStats,
  type ContainerStatusResponse,
  type ExecSyncResponse,
  type Image,
  type PodSandbox,
  type PodSandboxConfigSchema,
  type PodSandboxFilterSchema,
  type PodSandboxStatusResponse,
  type VersionResponse,
} from "../protocol/gen/k8s/cri/v1/api_pb.js";

export type PodSandboxConfigInit = MessageInitShape<typeof PodSandboxConfigSchema>;
export type ContainerConfigInit = MessageInitShape<typeof ContainerConfigSchema>;
export type ContainerFilterInit = MessageInitShape<typeof ContainerFilterSchema>;
export type PodSandboxFilterInit = MessageInitShape<typeof PodSandboxFilterSchema>;

export interface CriCallOptions {
  /** This call's deadline; the client's default (the kubelet's --runtime-request-timeout, 2 min) otherwise. */
  readonly timeoutMs?: number;
  /** Cancels the call (the server sees the gRPC cancellation). */
  readonly signal?: AbortSignal;
}

/** The kubelet's default --runtime-request-timeout. */
export const defaultCriTimeoutMs = 120_000;

/** The CRI version the kubelet announces in Version. */
export const criApiVersion = "v1";

export class CriClient {
  readonly #client: Client;
  readonly #defaultTimeoutMs: number;

  /** `address` is containerd's socket path (or a gRPC target such as unix:///run/containerd/containerd.sock). */
  constructor(address: string, opts: { defaultTimeoutMs?: number } = {}) {
    const target = address.startsWith("/") ? `unix://${address}` : address;
    this.#client = new Client(target, credentials.createInsecure());
    this.#defaultTimeoutMs = opts.defaultTimeoutMs ?? defaultCriTimeoutMs;
  }

  /**
   * One unary call of RuntimeService or ImageService. Throws the status's code (DEADLINE_EXCEEDED past
   * the deadline, CANCELLED when `signal` aborts), with the method's path in the message.
   */
  call<M extends DescMethodUnary>(
    method: M,
    request: MessageInitShape<M["input"]>,
    opts: CriCallOptions = {},
  ): Promise<MessageShape<M["output"]>> {
    const path = `/${method.parent.typeName}/${method.name}`;
    const timeoutMs = opts.timeoutMs ?? this.#defaultTimeoutMs;
    const input = create(method.input, request);
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted === true) {
        reject(new KataError(Code.Cancelled, `${path}: cancelled before it was sent`));
        return;
      }
      const call = this.#client.makeUnaryRequest(
        path,
        (m: typeof input) => Buffer.from(toBinary(method.input, m)),
        // CAST: fromBinary's result is MessageShape of the schema passed, which is M["output"]; TypeScript
        // cannot resolve that through the generic method type.
        (b: Buffer) => fromBinary(method.output, b) as MessageShape<M["output"]>,
        input,
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err: ServiceError | null, value?: MessageShape<M["output"]>) => {
          opts.signal?.removeEventListener("abort", onAbort);
          if (err !== null) {
            reject(callError(path, err));
            return;
          }
          if (value === undefined) {
            reject(new KataError(Code.Internal, `${path}: no response message and no error`));
            return;
          }
          resolve(value);
        },
      );
      const onAbort = (): void => {
        call.cancel();
      };
      opts.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  async version(opts?: CriCallOptions): Promise<VersionResponse> {
    return this.call(RuntimeService.method.version, { version: criApiVersion }, opts);
  }

  /** The new sandbox's id. `runtimeHandler` names containerd's runtimes.<handler> ("" for the default). */
  async runPodSandbox(config: PodSandboxConfigInit, runtimeHandler: string, opts?: CriCallOptions): Promise<string> {
    const r = await this.call(RuntimeService.method.runPodSandbox, { config, runtimeHandler }, opts);
    return r.podSandboxId;
  }

  async stopPodSandbox(podSandboxId: string, opts?: CriCallOptions): Promise<void> {
    await this.call(RuntimeService.method.stopPodSandbox, { podSandboxId }, opts);
  }

  async removePodSandbox(podSandboxId: string, opts?: CriCallOptions): Promise<void> {
    await this.call(RuntimeService.method.removePodSandbox, { podSandboxId }, opts);
  }

  /** With `verbose`, `info["info"]` is containerd's JSON about the sandbox (pid, netns path, runtime). */
  async podSandboxStatus(
    podSandboxId: string,
    opts: CriCallOptions & { verbose?: boolean } = {},
  ): Promise<PodSandboxStatusResponse> {
    return this.call(RuntimeService.method.podSandboxStatus, { podSandboxId, verbose: opts.verbose ?? false }, opts);
  }

  async listPodSandbox(filter?: PodSandboxFilterInit, opts?: CriCallOptions): Promise<PodSandbox[]> {
    const r = await this.call(RuntimeService.method.listPodSandbox, filter === undefined ? {} : { filter }, opts);
    return r.items;
  }

  /** The new container's id. The kubelet sends the pod's config again as `sandboxConfig`. */
  async createContainer(
    podSandboxId: string,
    config: ContainerConfigInit,
    sandboxConfig: PodSandboxConfigInit,
    opts?: CriCallOptions,
  ): Promise<string> {
    const r = await this.call(RuntimeService.method.createContainer, { podSandboxId, config, sandboxConfig }, opts);
    return r.containerId;
  }

  async startContainer(containerId: string, opts?: CriCallOptions): Promise<void> {
    await this.call(RuntimeService.method.startContainer, { containerId }, opts);
  }

  /** SIGTERM (or the image's stop signal), then SIGKILL after `timeoutSeconds`. */
  async stopContainer(containerId: string, timeoutSeconds: number, opts?: CriCallOptions): Promise<void> {
    await this.call(RuntimeService.method.stopContainer, { containerId, timeout: BigInt(timeoutSeconds) }, opts);
  }

  async removeContainer(containerId: string, opts?: CriCallOptions): Promise<void> {
    await this.call(RuntimeService.method.removeContainer, { containerId }, opts);
  }

  async listContainers(filter?: ContainerFilterInit, opts?: CriCallOptions): Promise<Container[]> {
    const r = await this.call(RuntimeService.method.listContainers, filter === undefined ? {} : { filter }, opts);
    return r.containers;
  }

  async containerStatus(
    containerId: string,
    opts: CriCallOptions & { verbose?: boolean } = {},
  ): Promise<ContainerStatusResponse> {
    return this.call(RuntimeService.method.containerStatus, { containerId, verbose: opts.verbose ?? false }, opts);
  }

  /**
   * Runs `cmd` in the container and waits for it. `timeoutSeconds` (0: none) is the runtime's limit;
   * the gRPC deadline is that plus the call's own timeout, so the runtime's answer arrives first.
   */
  async execSync(
    containerId: string,
    cmd: readonly string[],
    timeoutSeconds: number,
    opts: CriCallOptions = {},
  ): Promise<ExecSyncResponse> {
    const timeoutMs = timeoutSeconds * 1000 + (opts.timeoutMs ?? this.#defaultTimeoutMs);
    return this.call(
      RuntimeService.method.execSync,
      { containerId, cmd: [...cmd], timeout: BigInt(timeoutSeconds) },
      { ...opts, timeoutMs },
    );
  }

  async containerStats(containerId: string, opts?: CriCallOptions): Promise<ContainerStats> {
    const r = await this.call(RuntimeService.method.containerStats, { containerId }, opts);
    if (r.stats === undefined) throw new KataError(Code.Internal, `ContainerStats ${containerId}: no stats in reply`);
    return r.stats;
  }

  /** The image, or undefined when containerd does not have it (CRI answers an empty reply, not NOT_FOUND). */
  async imageStatus(image: string, opts?: CriCallOptions): Promise<Image | undefined> {
    const r = await this.call(ImageService.method.imageStatus, { image: { image } }, opts);
    return r.image;
  }

  async listImages(opts?: CriCallOptions): Promise<Image[]> {
    const r = await this.call(ImageService.method.listImages, {}, opts);
    return r.images;
  }

  close(): void {
    this.#client.close();
  }
}

/**
 * The KataError for a failed call: the status's code, our path and the status text. DEADLINE_EXCEEDED
 * is either our deadline (grpc-js: "Deadline exceeded after …") or the server's answer (containerd's
 * ExecSync past its timeout: "timeout 2s exceeded: context deadline exceeded"): the text tells which.
 */
function callError(path: string, err: ServiceError): KataError {
  const e = fromWireStatus({ code: err.code, message: err.details }, path);
  // The text goes into the message itself: test reporters print an error's message, not its cause.
  return new KataError(e.code, `${path}: ${err.details}`, { details: e.details });
}
