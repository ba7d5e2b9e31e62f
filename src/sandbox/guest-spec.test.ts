import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { defaultSpec } from "../oci/default-spec.js";
import type { Mount, Spec } from "../oci/spec.js";
import { kataError } from "../../test/helpers/fakes.js";
import { guestSpec } from "./guest-spec.js";

const rootfs = "/run/kata-containers/shared/containers/c1/rootfs";

/** A host spec with everything the guest must not see. */
function hostSpec(): Spec {
  const s = defaultSpec({ rootPath: "/var/lib/bundles/c1/rootfs", args: ["sleep", "1"] });
  s.hooks = {
    prestart: [{ path: "/usr/bin/netns-hook" }],
    poststop: [{ path: "/usr/bin/cleanup", args: ["cleanup", "c1"] }],
  };
  if (s.process === undefined || s.linux === undefined) throw new Error("defaultSpec has process and linux");
  s.process.apparmorProfile = "docker-default";
  s.process.selinuxLabel = "system_u:system_r:container_t:s0";
  s.linux.namespaces = [
    { type: "pid" },
    { type: "network", path: "/var/run/netns/cni-1" },
    { type: "ipc", path: "/proc/42/ns/ipc" },
    { type: "mount" },
  ];
  s.linux.devices = [{ path: "/dev/fuse", type: "c", major: 10, minor: 229 }];
  s.linux.mountLabel = "system_u:object_r:container_file_t:s0";
  s.linux.cgroupsPath = "/kubepods/besteffort/pod1/c1";
  return s;
}

describe("guestSpec", () => {
  it("points root at the container's rootfs on the guest share", () => {
    const spec = hostSpec();

    const out = guestSpec({ containerId: "c1", spec });

    assert.deepEqual(out.root, { path: rootfs, readonly: true });
  });

  it("keeps a writable root writable", () => {
    const spec = { ...hostSpec(), root: { path: "rootfs" } };

    const out = guestSpec({ containerId: "c1", spec });

    assert.deepEqual(out.root, { path: rootfs, readonly: false });
  });

  it("removes the hooks, which run on the host", () => {
    const spec = hostSpec();

    const out = guestSpec({ containerId: "c1", spec });

    assert.equal(out.hooks, undefined);
    assert.equal("hooks" in out, false);
  });

  it("removes the network namespace and drops every namespace path", () => {
    const spec = hostSpec();

    const out = guestSpec({ containerId: "c1", spec });

    assert.deepEqual(out.linux?.namespaces, [{ type: "pid" }, { type: "ipc" }, { type: "mount" }]);
  });

  it("drops net.* sysctls, which need a network namespace the container no longer has, and keeps the others", () => {
    const spec = hostSpec();
    // CAST: hostSpec always has linux.
    (spec.linux as NonNullable<Spec["linux"]>).sysctl = {
      "net.ipv4.ping_group_range": "0 0",
      "kernel.shmmax": "1024",
    };

    const out = guestSpec({ containerId: "c1", spec });

    assert.deepEqual(out.linux?.sysctl, { "kernel.shmmax": "1024" });
  });

  it("drops devices, the mount label and the process's AppArmor and SELinux labels", () => {
    const spec = hostSpec();

    const out = guestSpec({ containerId: "c1", spec });

    assert.equal(out.linux?.devices, undefined);
    assert.equal(out.linux?.mountLabel, undefined);
    assert.equal(out.process?.apparmorProfile, undefined);
    assert.equal(out.process?.selinuxLabel, undefined);
  });

  it("puts the container in its own cgroup under kata-ts", () => {
    const spec = hostSpec();

    const out = guestSpec({ containerId: "c1", spec });

    assert.equal(out.linux?.cgroupsPath, "/kata-ts/c1");
  });

  it("keeps what the guest can use: process, mounts the guest provides, resources, masked paths", () => {
    const spec = hostSpec();

    const out = guestSpec({ containerId: "c1", spec });

    assert.deepEqual(out.process?.args, ["sleep", "1"]);
    assert.deepEqual(out.mounts, spec.mounts);
    assert.deepEqual(out.linux?.resources, spec.linux?.resources);
    assert.deepEqual(out.linux?.maskedPaths, spec.linux?.maskedPaths);
    assert.equal(out.hostname, "kata-ts");
  });

  it("refuses mounts the guest cannot provide, without a storage plan, with UNIMPLEMENTED naming them", () => {
    const spec = hostSpec();
    spec.mounts = [
      ...(spec.mounts ?? []),
      { destination: "/data", type: "bind", source: "/srv/data", options: ["rbind"] },
      { destination: "/etc/hosts", source: "/var/lib/c1/hosts" },
      { destination: "/mnt/nfs", type: "nfs", source: "server:/export" },
    ];

    const call = (): Spec => guestSpec({ containerId: "c1", spec });

    assert.throws(
      call,
      kataError(
        Code.Unimplemented,
        "container c1: mounts of type bind at /data, bind at /etc/hosts, nfs at /mnt/nfs need storage planning",
      ),
    );
  });

  it("uses the planned mounts as they are, in place of the spec's", () => {
    const spec = hostSpec();
    spec.mounts = [{ destination: "/data", type: "bind", source: "/srv/data", options: ["rbind"] }];
    const planned: Mount[] = [
      { destination: "/proc", type: "proc", source: "proc" },
      {
        destination: "/data",
        type: "bind",
        source: "/run/kata-containers/shared/containers/c1-data",
        options: ["rbind", "ro"],
      },
    ];

    const out = guestSpec({ containerId: "c1", spec, mounts: planned });

    assert.deepEqual(out.mounts, planned);
    assert.notEqual(out.mounts[1], planned[1], "copies, not the caller's objects");
  });

  it("does not change the spec it is given", () => {
    const spec = hostSpec();
    const before = structuredClone(spec);

    guestSpec({ containerId: "c1", spec });

    assert.deepEqual(spec, before);
  });

  it("leaves a spec without linux or process without them", () => {
    const spec: Spec = { ociVersion: "1.0.2", root: { path: "rootfs" } };

    const out = guestSpec({ containerId: "c1", spec });

    assert.deepEqual(out, { ociVersion: "1.0.2", root: { path: rootfs, readonly: false } });
  });
});

describe("guestSpec seccomp (disable_guest_seccomp)", () => {
  const withProfile = (): Spec => {
    const s = hostSpec();
    if (s.linux === undefined) throw new Error("hostSpec has linux");
    s.linux.seccomp = { defaultAction: "SCMP_ACT_ERRNO", syscalls: [{ names: ["read"], action: "SCMP_ACT_ALLOW" }] };
    return s;
  };

  it("keeps the container's profile by default, for crun to apply in the guest", () => {
    const out = guestSpec({ containerId: "c1", spec: withProfile() });

    assert.equal(out.linux?.seccomp?.defaultAction, "SCMP_ACT_ERRNO");
  });

  it("leaves the profile out when the sandbox disables guest seccomp", () => {
    const spec = withProfile();

    const out = guestSpec({ containerId: "c1", spec, dropSeccomp: true });

    assert.equal(out.linux?.seccomp, undefined);
    assert.notEqual(spec.linux?.seccomp, undefined, "the host's spec is not changed");
  });
});
