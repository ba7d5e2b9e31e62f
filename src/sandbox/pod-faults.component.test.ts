// Failure atomicity of the create path, step by step, on the component harness (the real guest Agent
// behind a fake VM, fake mounts and netns): whichever step fails, create reports it, the pod is over,
// and nothing remains (no VM, mount, netns, state or mapping). Steps that can be checked before the VM
// exists fail before any VM is started.

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, KataError } from "../base/errors.js";
import type { Spec } from "../oci/spec.js";
import { ScriptedRunner, kataErrorChain } from "../../test/helpers/fakes.js";
import { Harness, criAnnotations } from "../../test/helpers/harness.js";
import { netnsName } from "../network/netns.js";
import { StateStore, runDirScope, type PersistedSandbox } from "./persist.js";
import { Pod, type PodDeps } from "./pod.js";

let h: Harness;

interface Step {
  readonly name: string;
  /** Fails before any VM is started. */
  readonly beforeBoot: boolean;
  readonly code: Code;
  readonly message: string | RegExp;
  readonly edit?: (spec: Spec) => void;
  /** Sets the fault up; may change the pod's dependencies. */
  readonly arrange?: (deps: PodDeps) => Promise<PodDeps> | PodDeps;
  /** Undoes what arrange made itself (not the pod's), before the leak check. */
  readonly tidy?: () => Promise<void>;
}

const injected = (what: string): KataError => new KataError(Code.Internal, `injected: ${what}`);

const steps: readonly Step[] = [
  {
    name: "the configuration",
    beforeBoot: true,
    code: Code.InvalidArgument,
    message: "injected: bad configuration",
    arrange: (d) => ({
      ...d,
      resolveVm: () => Promise.reject(new KataError(Code.InvalidArgument, "injected: bad configuration")),
    }),
  },
  {
    name: "a hook that does not exist",
    beforeBoot: true,
    code: Code.NotFound,
    message: "prestart hook /nonexistent/hook does not exist",
    edit: (s) => (s.hooks = { prestart: [{ path: "/nonexistent/hook" }] }),
  },
  {
    name: "a bind source that does not exist",
    beforeBoot: true,
    code: Code.InvalidArgument,
    message: "source /nonexistent/kata-ts-src does not exist",
    edit: (s) => {
      s.mounts = [...(s.mounts ?? []), { destination: "/data", type: "bind", source: "/nonexistent/kata-ts-src" }];
    },
  },
  {
    name: "a resource the wire cannot carry",
    beforeBoot: true,
    code: Code.InvalidArgument,
    message: "blockIO.weight",
    edit: (s) => {
      s.linux = { ...s.linux, resources: { blockIO: { weight: 5_000_000_000 } } };
    },
  },
  {
    name: "the host networking refusal",
    beforeBoot: true,
    code: Code.FailedPrecondition,
    message: "host networking requested",
    edit: (s) => {
      if (s.linux?.namespaces) s.linux.namespaces = s.linux.namespaces.filter((n) => n.type !== "network");
    },
  },
  {
    name: "the network namespace",
    beforeBoot: true,
    code: Code.AlreadyExists,
    message: "kata-ts-",
    arrange: async (d) => {
      await h.netns.create(netnsName("sb1", runDirScope(h.root)));
      return d;
    },
    tidy: () => h.netns.remove(netnsName("sb1", runDirScope(h.root))),
  },
  {
    name: "a prestart hook that fails",
    beforeBoot: true,
    code: Code.FailedPrecondition,
    message: "prestart hook /bin/true failed",
    edit: (s) => (s.hooks = { prestart: [{ path: "/bin/true" }] }),
    arrange: (d) => ({ ...d, runner: new ScriptedRunner(() => ({ code: 1, stderr: "hook says no" })) }),
  },
  {
    name: "the share directory",
    beforeBoot: true,
    code: Code.Internal,
    message: "injected: share",
    arrange: (d) => {
      h.mounter.failOn = (op, target) => (op === "bind" && target.endsWith("/shared") ? injected("share") : undefined);
      return d;
    },
  },
  {
    name: "wiring the pod network (taps and filters)",
    beforeBoot: true,
    code: Code.Internal,
    message: "injected: tc",
    arrange: (d) => {
      h.network.failSetup = injected("tc");
      return d;
    },
  },
  {
    name: "starting the VM",
    beforeBoot: false,
    code: Code.Internal,
    message: "injected: no VM",
    arrange: (d) => {
      h.hypervisor.startFault({ kind: "fail", error: injected("no VM") });
      return d;
    },
  },
  {
    name: "a VM that exits during boot",
    beforeBoot: false,
    code: Code.DeadlineExceeded,
    message: "the VM exited before its agent answered",
    arrange: (d) => {
      h.hypervisor.startFault({ kind: "exitDuringBoot" });
      return d;
    },
  },
  {
    name: "an agent that never answers",
    beforeBoot: false,
    code: Code.DeadlineExceeded,
    message: "did not answer within 100 ms",
    arrange: (d) => {
      h.bootTimeoutMs = 100;
      h.hypervisor.startFault({ kind: "frozen" });
      return { ...d, resolveVm: () => Promise.resolve(h.vmConfig()) };
    },
  },
  {
    name: "UpdateInterface in the guest",
    beforeBoot: false,
    code: Code.Internal,
    message: "configure interface eth0 (02:00:00:00:00:01) in the guest",
    arrange: (d) => {
      h.network.network = {
        ...h.network.network,
        interfaces: [{ device: "eth0", name: "eth0", hwAddr: "02:00:00:00:00:01", mtu: 1500n }],
      };
      h.hypervisor.rpcFault("updateInterface", { kind: "error", error: injected("UpdateInterface") });
      return d;
    },
  },
  {
    name: "CreateSandbox in the guest",
    beforeBoot: false,
    code: Code.Internal,
    message: "injected: CreateSandbox",
    arrange: (d) => {
      h.hypervisor.rpcFault("createSandbox", { kind: "error", error: injected("CreateSandbox") });
      return d;
    },
  },
  {
    name: "sharing the rootfs",
    beforeBoot: false,
    code: Code.Internal,
    message: "injected: rootfs",
    arrange: (d) => {
      h.mounter.failOn = (op, target) =>
        op === "bind" && target.endsWith("/sb1/rootfs") ? injected("rootfs") : undefined;
      return d;
    },
  },
  {
    name: "CreateContainer in the guest",
    beforeBoot: false,
    code: Code.Internal,
    message: "injected: CreateContainer",
    arrange: (d) => {
      h.hypervisor.rpcFault("createContainer", { kind: "error", error: injected("CreateContainer") });
      return d;
    },
  },
  {
    name: "saving the state",
    beforeBoot: true,
    code: Code.Internal,
    message: /save state .*\/sbs\/sb1\/state\.json/,
    arrange: async (d) => {
      // rename(2) of the new state file over a directory fails.
      await mkdir(path.join(h.root, "sbs", "sb1", "state.json", "x"), { recursive: true });
      return d;
    },
  },
  {
    name: "saving the state once the sandbox exists",
    beforeBoot: false,
    code: Code.ResourceExhausted,
    message: "injected: state directory full",
    arrange: (d) => ({ ...d, store: new LateFailingStore(h.root) }),
  },
];

/** A store whose saves fail once a container is in the state: the state directory filled during the boot. */
class LateFailingStore extends StateStore {
  /** The containers of each save asked for ("id status"), in order. */
  readonly saves: string[][] = [];

  /** Fails the first save with a container whose create finished. */
  override save(s: PersistedSandbox): Promise<void> {
    this.saves.push(s.containers.map((c) => `${c.id} ${c.status}`));
    if (s.containers.some((c) => c.status !== "creating")) {
      return Promise.reject(new KataError(Code.ResourceExhausted, "injected: state directory full"));
    }
    return super.save(s);
  }
}

describe("Pod create failures, step by step (fake VM, real agent)", { timeout: 10_000 }, () => {
  beforeEach(async () => {
    h = await Harness.create();
  });
  afterEach(async () => {
    await h.dispose();
  });

  for (const step of steps) {
    it(`leaves nothing when ${step.name} fails${step.beforeBoot ? ", before any VM starts" : ""}`, async () => {
      const deps = (await step.arrange?.(h.podDeps())) ?? h.podDeps();
      const pod = new Pod(deps, h.podOptions("sb1"));
      const bundle = await h.bundle("sb1", { args: ["true"], ...(step.edit === undefined ? {} : { edit: step.edit }) });

      const create = pod.create(
        { id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths },
        new AbortController().signal,
      );

      await assert.rejects(create, kataErrorChain(step.code, step.message));
      await pod.done;
      if (step.beforeBoot) assert.deepEqual(h.hypervisor.configs, [], "no VM may have been started");
      await step.tidy?.();
      assert.deepEqual(await h.leaks(), []);
      assert.equal(await h.store.sandboxOf("sb1"), undefined);
    });
  }

  it("saves no state for a sandbox whose create is being undone", async () => {
    const store = new LateFailingStore(h.root);
    const pod = new Pod({ ...h.podDeps(), store }, h.podOptions("sb1"));
    const bundle = await h.bundle("sb1", { args: ["true"] });

    const create = pod.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, new AbortController().signal);

    await assert.rejects(create, kataErrorChain(Code.ResourceExhausted, "injected: state directory full"));
    await pod.done;
    // Before the boot, once its network namespace exists, once its taps exist, then the one that failed: undoing the create
    // destroys the sandbox, which is then lost, and that must not write a state the teardown has to race
    // to remove.
    assert.deepEqual(store.saves, [["sb1 creating"], ["sb1 creating"], ["sb1 creating"], ["sb1 created"]]);
    assert.deepEqual(await h.leaks(), []);
  });

  it("leaves nothing when its stdout cannot be opened, before any VM starts", async () => {
    const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
    const bundle = await h.bundle("sb1", { args: ["true"] });
    const stdio = { stdin: "", stdout: path.join(h.dir, "no", "such", "dir", "out"), stderr: "", terminal: false };

    await assert.rejects(
      pod.create({ id: "sb1", bundle, stdio }, new AbortController().signal),
      kataErrorChain(Code.NotFound, `open stdout ${stdio.stdout} of sb1`),
    );

    await pod.done;
    assert.deepEqual(h.hypervisor.configs, []);
    assert.deepEqual(await h.leaks(), []);
  });

  it("leaves an existing container's mapping alone when the id is taken, and makes nothing", async () => {
    await h.store.addMapping("sb1", "other");
    const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
    const bundle = await h.bundle("sb1", { args: ["true"] });

    const create = pod.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, new AbortController().signal);

    await assert.rejects(create, kataErrorChain(Code.AlreadyExists, "container sb1 already exists"));
    assert.equal(await h.store.sandboxOf("sb1"), "other");
    assert.deepEqual(h.hypervisor.configs, []);
    await h.store.removeMapping("sb1");
    assert.deepEqual(await h.leaks(), []);
  });

  it("leaves nothing when the caller goes away while the VM boots (CANCELLED)", async () => {
    h.hypervisor.startFault({ kind: "hang" });
    const pod = new Pod(h.podDeps(), h.podOptions("sb1"));
    const bundle = await h.bundle("sb1", { args: ["true"] });
    const caller = new AbortController();

    const create = pod.create({ id: "sb1", bundle, stdio: (await h.stdio("sb1")).paths }, caller.signal);
    setTimeout(() => {
      caller.abort();
    }, 20);

    await assert.rejects(create, kataErrorChain(Code.Cancelled));
    await pod.done;
    assert.deepEqual(await h.leaks(), []);
  });

  it("keeps the sandbox and drops every trace of a pod container whose prestart hook fails", async () => {
    const runner = new ScriptedRunner(() => ({ code: 1, stderr: "no" }));
    const pod = new Pod({ ...h.podDeps(), runner }, h.podOptions("sb1"));
    const signal = new AbortController().signal;
    const sb = await h.bundle("sb1", { args: ["sleep", "inf"], annotations: criAnnotations("sandbox", "sb1") });
    await pod.create({ id: "sb1", bundle: sb, stdio: (await h.stdio("sb1")).paths }, signal);
    const c1 = await h.bundle("c1", {
      args: ["true"],
      annotations: criAnnotations("container", "sb1"),
      edit: (s) => (s.hooks = { prestart: [{ path: "/bin/true" }] }),
    });

    const create = pod.create({ id: "c1", bundle: c1, stdio: (await h.stdio("c1")).paths }, signal);

    await assert.rejects(create, kataErrorChain(Code.FailedPrecondition, "prestart hook /bin/true failed"));
    assert.deepEqual(pod.containerIds(), ["sb1"]);
    assert.equal(await h.store.sandboxOf("c1"), undefined);
    assert.deepEqual(h.hypervisor.vm.crun.containerIds(), []);
    assert.equal(
      h.mounter.mounted().some((m) => m.includes("/c1/")),
      false,
      "no bind of c1 may remain",
    );
    await pod.shutdown();
    assert.deepEqual(await h.leaks(), []);
  });
});
