// A pod's CRI configs shaped as the kubelet sends them (kuberuntime's generatePodSandboxConfig and
// generateContainerConfig), for the Kubernetes integration test and the benchmark: labels, log paths,
// namespace options, the pod's security context with fsGroup folded into the supplemental groups, and
// emptyDir volumes at the kubelet's plugin directory. Pure.

import path from "node:path";
import { NamespaceMode, SecurityProfile_ProfileType } from "../protocol/gen/k8s/cri/v1/api_pb.js";
import type { ContainerConfigInit, PodSandboxConfigInit } from "./cri-client.js";

export interface KubePod {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  /** The kubelet's --root-dir (/var/lib/kubelet): pods/<uid>/volumes/… live under it. */
  readonly kubeletRoot: string;
  /** Parent of the pod's log directory (/var/log/pods). */
  readonly logRoot: string;
  /** cgroupfs path the pod's cgroups go under (the kubelet's /kubepods/burstable/pod<uid>). */
  readonly cgroupParent?: string;
  /** The pod's securityContext.runAsUser and fsGroup. */
  readonly runAsUser?: number;
  readonly fsGroup?: number;
  readonly dnsServers?: readonly string[];
}

export interface KubeContainer {
  readonly name: string;
  readonly image: string;
  readonly command: readonly string[];
  /** Overrides the pod's runAsUser. */
  readonly runAsUser?: number;
  readonly readonlyRootfs?: boolean;
  /** volume name → path in the container; each is an emptyDir of the pod. */
  readonly emptyDirs?: Readonly<Record<string, string>>;
  /** Other host binds (a hosts file, the termination log). */
  readonly binds?: readonly {
    readonly hostPath: string;
    readonly containerPath: string;
    readonly readonly?: boolean;
  }[];
}

/** /var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~empty-dir/<volume> under `kubeletRoot`. */
export function emptyDirHostPath(pod: Pick<KubePod, "kubeletRoot" | "uid">, volume: string): string {
  return path.join(pod.kubeletRoot, "pods", pod.uid, "volumes", "kubernetes.io~empty-dir", volume);
}

/** /var/log/pods/<namespace>_<name>_<uid>. */
export function podLogDirectory(pod: KubePod): string {
  return path.join(pod.logRoot, `${pod.namespace}_${pod.name}_${pod.uid}`);
}

function podLabels(pod: KubePod): Record<string, string> {
  return {
    "io.kubernetes.pod.name": pod.name,
    "io.kubernetes.pod.namespace": pod.namespace,
    "io.kubernetes.pod.uid": pod.uid,
  };
}

/** The kubelet adds the fsGroup to every container's supplemental groups. */
function supplementalGroups(pod: KubePod): bigint[] {
  return pod.fsGroup === undefined ? [] : [BigInt(pod.fsGroup)];
}

export function kubeletSandboxConfig(pod: KubePod): PodSandboxConfigInit {
  return {
    metadata: { name: pod.name, namespace: pod.namespace, uid: pod.uid, attempt: 0 },
    hostname: pod.name,
    logDirectory: podLogDirectory(pod),
    dnsConfig: { servers: [...(pod.dnsServers ?? [])], searches: [`${pod.namespace}.svc.cluster.local`], options: [] },
    labels: podLabels(pod),
    annotations: { "kubernetes.io/config.source": "api" },
    linux: {
      ...(pod.cgroupParent === undefined ? {} : { cgroupParent: pod.cgroupParent }),
      securityContext: {
        namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD },
        ...(pod.runAsUser === undefined ? {} : { runAsUser: { value: BigInt(pod.runAsUser) } }),
        supplementalGroups: supplementalGroups(pod),
        seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault },
      },
    },
  };
}

export function kubeletContainerConfig(pod: KubePod, c: KubeContainer): ContainerConfigInit {
  const runAsUser = c.runAsUser ?? pod.runAsUser;
  const volumes = Object.entries(c.emptyDirs ?? {}).map(([volume, containerPath]) => ({
    containerPath,
    hostPath: emptyDirHostPath(pod, volume),
  }));
  return {
    metadata: { name: c.name, attempt: 0 },
    image: { image: c.image },
    command: [...c.command],
    workingDir: "",
    envs: [{ key: "KUBERNETES_SERVICE_HOST", value: "10.96.0.1" }],
    mounts: [
      ...volumes,
      ...(c.binds ?? []).map((b) => ({
        containerPath: b.containerPath,
        hostPath: b.hostPath,
        readonly: b.readonly ?? false,
      })),
    ],
    labels: { ...podLabels(pod), "io.kubernetes.container.name": c.name },
    annotations: { "io.kubernetes.container.restartCount": "0" },
    logPath: `${c.name}/0.log`,
    linux: {
      resources: { cpuShares: 2n, oomScoreAdj: 1000n },
      securityContext: {
        namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD },
        ...(runAsUser === undefined ? {} : { runAsUser: { value: BigInt(runAsUser) } }),
        readonlyRootfs: c.readonlyRootfs ?? false,
        supplementalGroups: supplementalGroups(pod),
        seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault },
        maskedPaths: ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
        readonlyPaths: ["/proc/bus", "/proc/sys", "/proc/sysrq-trigger"],
      },
    },
  };
}
