// `kata-ts image build [--output DIR] [--cache DIR] [--force] [--no-snapshot]`: builds the guest kernel,
// initrd and tools disk (and the agent's startup snapshot, in a VM), progress on stderr, the resulting
// paths at the end. Mounted on the root CLI by cli/.

import { basename, dirname, join } from "node:path";
import { Command } from "commander";
import type { Hypervisor } from "../hypervisor/hypervisor.js";
import type { ProcessRunner } from "../platform/process.js";
import { agentSnapshotEntryRelPath } from "./agent-paths.js";
import { buildGuestImage, defaultCacheDir, defaultImageDir } from "./guest-image.js";

export interface ImageCommandDeps {
  readonly runner: ProcessRunner;
  /** The bundled guest agent (dist/agent/kata-ts-agent.mjs of this install); its CommonJS twin is next to it. */
  readonly agentBundlePath: string;
  /** For the snapshot build VM (called once, unless --no-snapshot). Without it, no snapshot is built. */
  readonly hypervisor?: () => Hypervisor;
  readonly stderr: (text: string) => void;
  /** Final result lines; stderr when not given. */
  readonly stdout?: (text: string) => void;
  readonly signal?: AbortSignal;
}

interface BuildFlags {
  readonly output: string;
  readonly cache: string;
  readonly force?: boolean;
  /** commander's `--no-snapshot`: false when given. */
  readonly snapshot: boolean;
}

export function imageCommand(deps: ImageCommandDeps): Command {
  const image = new Command("image").description("build and inspect the guest VM image (kernel, initrd, tools disk)");
  image
    .command("build")
    .description("build the guest kernel, initrd and tools disk (skipped when the inputs did not change)")
    .option("--output <dir>", "directory for vmlinux, initrd.img, tools.erofs and manifest.json", defaultImageDir)
    .option("--cache <dir>", "cache for the kernel package and the stripped node binary", defaultCacheDir)
    .option("--force", "rebuild even when the image is up to date")
    .option("--no-snapshot", "no agent startup snapshot: the agent loads its bundle at every boot (~1 s slower)")
    .action(async (_opts: unknown, cmd: Command) => {
      const flags = cmd.opts<BuildFlags>();
      const out = deps.stdout ?? deps.stderr;
      const hypervisor = flags.snapshot ? deps.hypervisor?.() : undefined;
      const r = await buildGuestImage(
        { runner: deps.runner, ...(hypervisor === undefined ? {} : { hypervisor }) },
        {
          outputDir: flags.output,
          cacheDir: flags.cache,
          agentBundlePath: deps.agentBundlePath,
          ttyHelperPath: join(dirname(dirname(deps.agentBundlePath)), "native", "kata-ts-tty"),
          reseedHelperPath: join(dirname(dirname(deps.agentBundlePath)), "native", "kata-ts-reseed"),
          sealedExecPath: join(dirname(dirname(deps.agentBundlePath)), "native", "kata-ts-sealed-exec"),
          agentSnapshotEntryPath: join(dirname(deps.agentBundlePath), basename(agentSnapshotEntryRelPath)),
          force: flags.force === true,
          progress: (line) => {
            deps.stderr(`${line}\n`);
          },
          ...(deps.signal === undefined ? {} : { signal: deps.signal }),
        },
      );
      const timings = Object.entries(r.timingsMs)
        .map(([k, v]) => `${k}=${v}ms`)
        .join(" ");
      out(
        [
          `kernel: ${r.kernelPath}`,
          `initrd: ${r.initrdPath}`,
          `toolsDisk: ${r.toolsDiskPath}`,
          `agentStart: ${r.agentStart}`,
          `kernelRelease: ${r.kernelRelease}`,
          `inputsHash: ${r.inputsHash}`,
          `rebuilt: ${r.rebuilt}`,
          `timings: ${timings}`,
          "",
        ].join("\n"),
      );
    });
  return image;
}
