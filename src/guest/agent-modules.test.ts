// The agent loads the kernel modules CreateSandbox names ([agent.kata] kernel_modules), before it
// records the sandbox; a module it cannot load fails the request.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, KataError } from "../base/errors.js";
import { nullLogger } from "../base/log.js";
import type { Mounter } from "../platform/mount.js";
import { CreateSandboxRequestSchema } from "../protocol/gen/agent_pb.js";
import { kataError } from "../../test/helpers/fakes.js";
import { Agent, type AgentDeps } from "./agent.js";
import { StorageManager } from "./storage.js";

const noMounter: Mounter = {
  mount: () => Promise.reject(new Error("unexpected mount")),
  bind: () => Promise.reject(new Error("unexpected bind")),
  remountReadonly: () => Promise.reject(new Error("unexpected remount")),
  setPropagation: () => Promise.reject(new Error("unexpected propagation change")),
  unmount: () => Promise.reject(new Error("unexpected unmount")),
};

function agentWith(loadKernelModule: AgentDeps["loadKernelModule"]): Agent {
  return new Agent({
    // CAST: createSandbox never calls crun.
    crun: {} as AgentDeps["crun"],
    storage: new StorageManager({ mounter: noMounter, logger: nullLogger }, []),
    logger: nullLogger,
    setHostname: () => Promise.resolve(),
    ...(loadKernelModule === undefined ? {} : { loadKernelModule }),
  });
}

const request = (modules: { name: string; parameters?: string[] }[]) =>
  create(CreateSandboxRequestSchema, { sandboxId: "sb1", kernelModules: modules });

describe("Agent kernel modules", () => {
  it("loads each module with its parameters, in order, then creates the sandbox", async () => {
    const loaded: string[] = [];
    const agent = agentWith((name, params) => {
      loaded.push([name, ...params].join(" "));
      return Promise.resolve();
    });

    await agent.createSandbox(request([{ name: "e1000e", parameters: ["EEE=1"] }, { name: "dummy" }]));

    assert.deepEqual(loaded, ["e1000e EEE=1", "dummy"]);
    assert.equal(agent.sandboxId, "sb1");
  });

  it("fails CreateSandbox with the module's error and records no sandbox", async () => {
    const agent = agentWith((name) =>
      Promise.reject(new KataError(Code.NotFound, `kernel module ${name} is not in the guest image`)),
    );

    await assert.rejects(
      agent.createSandbox(request([{ name: "nosuchmod" }])),
      kataError(Code.NotFound, "kernel module nosuchmod is not in the guest image"),
    );
    assert.equal(agent.sandboxId, undefined);
  });

  it("refuses a module name that could be a path, before loading anything", async () => {
    const loaded: string[] = [];
    const agent = agentWith((name) => {
      loaded.push(name);
      return Promise.resolve();
    });

    await assert.rejects(
      agent.createSandbox(request([{ name: "../../tmp/evil" }])),
      kataError(Code.InvalidArgument, "kernel module name"),
    );
    assert.deepEqual(loaded, []);
  });
});
