// The CLI's verbs, grouped by the module that implements them: kata-ts-main.ts imports only the group
// of the verb it runs (all of them for help). A verb missing here would be an unknown command: the
// test registers every group and compares.

import path from "node:path";
import type { Command } from "commander";
import { installRoot } from "./paths.js";
import type { RuntimeContext } from "./runtime-context.js";

export type Ctx = () => RuntimeContext;

/** The modules behind the verbs; `context` when their commands call the runtime context. */
export interface VerbGroup {
  readonly verbs: readonly string[];
  readonly context: boolean;
  register(program: Command, ctx: Ctx, root: () => string): Promise<void>;
}

export const verbGroups: readonly VerbGroup[] = [
  {
    verbs: ["state", "list"],
    context: false,
    register: async (p, _c, root) => {
      (await import("./commands/state.js")).registerState(p, root);
    },
  },
  {
    verbs: ["create", "start", "kill", "delete", "wait"],
    context: true,
    register: async (p, c) => {
      (await import("./commands/lifecycle.js")).registerLifecycle(p, c);
    },
  },
  {
    verbs: ["run"],
    context: true,
    register: async (p, c) => {
      (await import("./commands/run.js")).registerRun(p, c);
    },
  },
  {
    verbs: ["exec"],
    context: true,
    register: async (p, c) => {
      (await import("./commands/exec.js")).registerExec(p, c);
    },
  },
  {
    verbs: ["ps", "pause", "resume", "update", "events", "spec"],
    context: true,
    register: async (p, c) => {
      (await import("./commands/inspect.js")).registerInspect(p, c);
    },
  },
  {
    verbs: ["checkpoint", "restore"],
    context: false,
    register: async (p) => {
      (await import("./commands/unsupported.js")).registerUnsupported(p);
    },
  },
  {
    verbs: ["check", "kata-check"],
    context: true,
    register: async (p, c) => {
      (await import("./commands/check.js")).registerCheck(p, c);
    },
  },
  {
    verbs: ["env", "kata-env"],
    context: true,
    register: async (p, c) => {
      (await import("./commands/env.js")).registerEnv(p, c);
    },
  },
  {
    verbs: ["factory"],
    context: true,
    register: async (p, c) => {
      (await import("./commands/factory.js")).registerFactory(p, c);
    },
  },
  {
    verbs: ["install"],
    context: false,
    register: async (p) => {
      const { registerInstall } = await import("./commands/install.js");
      const { NodeInstallFs } = await import("./commands/install-apply.js");
      registerInstall(p, {
        fs: new NodeInstallFs(),
        installRoot,
        stdout: (t) => process.stdout.write(t),
        stderr: (t) => process.stderr.write(t),
      });
    },
  },
  {
    verbs: ["image"],
    context: true,
    register: async (p, c) => {
      const { agentBundleRelPath } = await import("../image/agent-paths.js");
      const { imageCommand } = await import("../image/image-command.js");
      const { NodeProcessRunner } = await import("../platform/process.js");
      const { launcherPath } = await import("./runtime-context.js");
      p.addCommand(
        imageCommand({
          runner: new NodeProcessRunner({ launcher: launcherPath }),
          agentBundlePath: path.join(installRoot, agentBundleRelPath),
          hypervisor: () => c().sandboxDeps().hypervisor,
          stderr: (t) => process.stderr.write(t),
          stdout: (t) => process.stdout.write(t),
        }),
      );
    },
  },
];
