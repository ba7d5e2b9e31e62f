import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { emptyDirVolume } from "../storage/empty-dir.js";
import {
  emptyDirHostPath,
  kubeletContainerConfig,
  kubeletSandboxConfig,
  podLogDirectory,
  type KubePod,
} from "./cri-pod.js";

const pod: KubePod = {
  name: "web",
  namespace: "default",
  uid: "6f1c",
  kubeletRoot: "/tmp/k/kubelet",
  logRoot: "/tmp/k/log",
  cgroupParent: "/kata-ts-test-1",
  runAsUser: 1000,
  fsGroup: 2000,
};

describe("kubelet-shaped CRI configs", () => {
  it("puts emptyDirs where kata-ts recognises them as the kubelet's", () => {
    const p = emptyDirHostPath(pod, "cache");
    assert.equal(p, "/tmp/k/kubelet/pods/6f1c/volumes/kubernetes.io~empty-dir/cache");
    assert.equal(emptyDirVolume(p), "cache");
  });

  it("sends the pod's cgroup parent, user and fsGroup as a supplemental group", () => {
    const c = kubeletSandboxConfig(pod);
    assert.equal(c.linux?.cgroupParent, "/kata-ts-test-1");
    assert.equal(c.linux.securityContext?.runAsUser?.value, 1000n);
    assert.deepEqual(c.linux.securityContext.supplementalGroups, [2000n]);
    assert.equal(c.logDirectory, podLogDirectory(pod));
    assert.equal(c.logDirectory, "/tmp/k/log/default_web_6f1c");
  });

  it("gives a container its emptyDir mounts, its own user over the pod's, and the fsGroup", () => {
    const c = kubeletContainerConfig(pod, {
      name: "b",
      image: "img",
      command: ["sh"],
      runAsUser: 0,
      emptyDirs: { cache: "/data" },
      binds: [{ hostPath: "/h", containerPath: "/etc/hosts" }],
    });
    assert.deepEqual(
      c.mounts?.map((m) => [m.containerPath, m.hostPath]),
      [
        ["/data", emptyDirHostPath(pod, "cache")],
        ["/etc/hosts", "/h"],
      ],
    );
    assert.equal(c.linux?.securityContext?.runAsUser?.value, 0n);
    assert.deepEqual(c.linux.securityContext.supplementalGroups, [2000n]);
    assert.equal(c.logPath, "b/0.log");
  });
});
