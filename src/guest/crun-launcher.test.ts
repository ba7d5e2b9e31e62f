import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isOnReadOnlyMount, planCrunLauncher } from "./crun-launcher.js";

// The guest's own mountinfo (read in a kata-ts guest), lines trimmed to what the parser reads.
const guest = [
  "20 1 0:2 / / rw - rootfs rootfs rw,size=998216k",
  "21 20 0:19 / /proc rw,relatime - proc proc rw",
  "23 20 0:5 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755",
  "26 20 0:23 / /run rw,nosuid,nodev,relatime - tmpfs run rw,mode=755",
  "29 20 254:0 / /opt/kata-ts/tools ro,relatime - erofs /dev/vda ro,user_xattr,acl,cache_strategy=readaround",
  "30 20 0:26 / /run/kata-containers/shared/containers rw,nodev,relatime - 9p kataShared rw,mmap,trans=virtio",
  "",
].join("\n");

describe("isOnReadOnlyMount", () => {
  it("finds the guest's crun on the read-only tools disk, and the agent's bundles on a writable tmpfs", () => {
    assert.equal(isOnReadOnlyMount(guest, "/opt/kata-ts/tools/usr/bin/crun"), true);
    assert.equal(isOnReadOnlyMount(guest, "/run/kata-ts/bundles/c1"), false);
    assert.equal(isOnReadOnlyMount(guest, "/usr/bin/crun"), false);
  });

  it("takes the deepest mount point, not a sibling sharing its prefix", () => {
    assert.equal(isOnReadOnlyMount(guest, "/opt/kata-ts/toolsx/crun"), false);
    assert.equal(isOnReadOnlyMount(guest, "/opt/kata-ts/tools"), true);
  });

  it("takes the last of mounts stacked on one point (the one on top)", () => {
    const stacked = `${guest}31 29 0:30 / /opt/kata-ts/tools rw,relatime - tmpfs over rw\n`;
    assert.equal(isOnReadOnlyMount(stacked, "/opt/kata-ts/tools/usr/bin/crun"), false);
    const back = `${stacked}32 31 254:0 / /opt/kata-ts/tools ro,relatime - erofs /dev/vda ro\n`;
    assert.equal(isOnReadOnlyMount(back, "/opt/kata-ts/tools/usr/bin/crun"), true);
  });

  it("counts a superblock mounted read-only under a writable bind as read-only (statfs says ST_RDONLY)", () => {
    const m = "40 1 8:1 / / rw,relatime - ext4 /dev/sda1 ro,errors=remount-ro\n";
    assert.equal(isOnReadOnlyMount(m, "/usr/bin/crun"), true);
  });

  it("reads optional fields and octal-escaped mount points", () => {
    const m = [
      "1 0 8:1 / / rw shared:1 - ext4 /dev/sda1 rw",
      "2 1 8:2 / /my\\040tools ro shared:2 master:1 - ext4 /dev/sda2 rw",
    ].join("\n");
    assert.equal(isOnReadOnlyMount(m, "/my tools/crun"), true);
    assert.equal(isOnReadOnlyMount(m, "/my\\040tools/crun"), false);
  });

  it("is undefined when no line covers the file, and skips malformed lines", () => {
    assert.equal(isOnReadOnlyMount("", "/usr/bin/crun"), undefined);
    assert.equal(isOnReadOnlyMount("garbage\n1 2 3 4\n5 6 7:8 / /x ro\n", "/x/crun"), undefined);
  });
});

describe("planCrunLauncher", () => {
  it("runs only exec through the launcher when crun is on a read-only mount (crun makes no copy there)", () => {
    const plan = planCrunLauncher(true, true);
    assert.equal(plan.viaLauncher, true);
    assert.deepEqual([...(plan.verbs ?? [])], ["exec"]);
    assert.equal(plan.warning, undefined);
  });

  it("runs every verb through the launcher when crun may be writable or its mount is unknown", () => {
    for (const readOnly of [false, undefined]) {
      const plan = planCrunLauncher(readOnly, true);
      assert.equal(plan.viaLauncher, true);
      assert.equal(plan.verbs, undefined, "undefined verbs: all of them");
    }
  });

  it("runs crun direct without a launcher in the image, warning only when crun would copy itself", () => {
    assert.deepEqual(planCrunLauncher(true, false), { viaLauncher: false });
    const plan = planCrunLauncher(false, false);
    assert.equal(plan.viaLauncher, false);
    assert.match(plan.warning ?? "", /copies itself at every command/);
  });
});
