// runc's verbs that kata-ts refuses, each with why: commander would otherwise say "unknown command", as
// if the verb had been mistyped.

import type { Command } from "commander";
import { Code, KataError } from "../../base/errors.js";

const refused: Readonly<Record<string, { readonly summary: string; readonly why: string }>> = {
  checkpoint: {
    summary: "not supported: checkpoint a running container (runc's, with CRIU)",
    why: "checkpoint is not supported: the container runs in a VM, where the host's CRIU cannot reach its processes",
  },
  restore: {
    summary: "not supported: restore a container from a checkpoint (runc's, with CRIU)",
    why: "restore is not supported: kata-ts makes no checkpoints to restore (the container runs in a VM)",
  },
};

export function registerUnsupported(program: Command): void {
  for (const [verb, { summary, why }] of Object.entries(refused)) {
    program
      .command(verb)
      .description(summary)
      .argument("[args...]")
      .allowUnknownOption()
      .helpOption(false)
      .action(() => {
        throw new KataError(Code.Unimplemented, why);
      });
  }
}
