// The agent's V8 startup snapshot (`node --build-snapshot`), built inside a VM of the image being built.
// Not on the host: a snapshot only loads where V8 sees the same CPU features as when it was built
// (v8.cachedDataVersionTag() hashes them in), and the guest's CPU is QEMU's, not the host's (TCG's
// "max" model, or KVM's "host" model which still hides some host features). Measured under TCG: the
// agent serves its port ~1 s sooner than when Node loads the 200 kB bundle and builds the protobuf
// descriptors at every boot.

import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { deadline, raceAbort } from "../base/async.js";
import { Code, KataError, errnoOf, isKataError, wrap } from "../base/errors.js";
import type { Hypervisor } from "../hypervisor/hypervisor.js";
import { snapshotBuiltLine, toolsDiskSerial } from "./guest-init.js";

export interface SnapshotBuild {
  readonly kernelPath: string;
  /** An initrd planned with the agent layout "build-snapshot". */
  readonly initrdPath: string;
  readonly toolsDiskPath: string;
  /** Created, and left for the caller to remove: the VM's sockets and the written snapshot live below it. */
  readonly workDir: string;
  /** Whole VM run; under TCG the build takes ~8 s (boot included). */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

const defaultTimeoutMs = 180_000;

/**
 * Boots the build VM and returns the path of the snapshot it wrote (under `workDir`). Throws
 * DEADLINE_EXCEEDED when the VM does not finish in time, INTERNAL with the console's last lines when it
 * finishes without a snapshot, CANCELLED when `signal` aborts.
 */
export async function buildAgentSnapshot(hypervisor: Hypervisor, b: SnapshotBuild): Promise<string> {
  const shareDir = join(b.workDir, "share");
  const blob = join(shareDir, "agent.blob");
  await mkdir(shareDir, { recursive: true, mode: 0o700 });
  const timeoutMs = b.timeoutMs ?? defaultTimeoutMs;
  const limit = deadline(timeoutMs, b.signal);
  const { signal } = limit;
  const vm = await hypervisor
    .startVm(
      {
        id: "agent-snapshot",
        vmDir: join(b.workDir, "vm"),
        // The shape of a sandbox VM (src/cli/vm-config.ts): only the CPU model matters to V8, and it
        // follows the accelerator, which the hypervisor picks the same way for both.
        machineType: "microvm",
        vcpus: 1,
        memoryMiB: 2048,
        kernelPath: b.kernelPath,
        initrdPath: b.initrdPath,
        readonlyDisks: [{ path: b.toolsDiskPath, serial: toolsDiskSerial }],
        kernelParams: ["panic=1"],
        sharedDir: shareDir,
      },
      signal,
    )
    .catch((e: unknown) => {
      limit.clear();
      throw e;
    });
  try {
    try {
      await raceAbort(vm.exited, signal, "build the agent snapshot");
    } catch (e) {
      if (!isKataError(e, Code.DeadlineExceeded)) throw e;
      const tail = await vm.consoleTail(20);
      throw new KataError(Code.DeadlineExceeded, `${e.message} (${timeoutMs} ms); console:\n${tail}`, { cause: e });
    }
    const console = await vm.consoleTail(40);
    const size = await stat(blob).then(
      (st) => st.size,
      (e: unknown) => {
        if (errnoOf(e) === "ENOENT") return 0; // not written: reported below with the console
        throw wrap(e, `stat ${blob}`);
      },
    );
    if (!console.includes(snapshotBuiltLine) || size === 0) {
      throw new KataError(Code.Internal, `build the agent snapshot: the VM wrote none; console:\n${console}`);
    }
    return blob;
  } finally {
    limit.clear();
    await vm.stop();
  }
}

/** Removes a build's work directory (the snapshot in it too: copy it out first). */
export async function removeSnapshotWork(workDir: string): Promise<void> {
  await rm(workDir, { recursive: true, force: true });
}
