// `npm run demo`: makes a busybox OCI bundle (no registry needed) and runs it with `kata-ts run`, so
// the container prints the guest kernel's release (not the host's). Prints how long each phase took;
// the container's exit code becomes the command's.

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import path from "node:path";
import { describeError } from "../base/errors.js";
import { defaultCacheDir } from "../image/guest-image.js";
import { NodeProcessRunner } from "../platform/process.js";
import { makeBusyboxBundle } from "../tools/busybox-bundle.js";
import { installRoot, launcherPath } from "./runtime-context.js";
import { ignoreErrno } from "../base/errors.js";

const greeting = "Hello from kata-ts: this container runs in its own virtual machine.";

function line(label: string, ms: number): string {
  return `  ${label.padEnd(34)} ${(ms / 1000).toFixed(2).padStart(7)} s`;
}

async function main(): Promise<number> {
  const t0 = performance.now();
  const runner = new NodeProcessRunner({ launcher: launcherPath });
  const bundleDir = path.join(defaultCacheDir, "demo", "bundle");
  await makeBusyboxBundle(
    { runner },
    {
      dir: bundleDir,
      args: [
        "sh",
        "-c",
        `echo "${greeting}"; echo "guest kernel: $(uname -r)"; echo "guest cpus: $(nproc), hostname: $(hostname)"`,
      ],
    },
  );
  const bundleMs = performance.now() - t0;
  const tmp = await mkdtemp(path.join(tmpdir(), "kata-ts-demo-"));
  const timingsFile = path.join(tmp, "timings.json");
  process.stdout.write(`host kernel: ${release()}\n--- container output ---\n`);
  const t1 = performance.now();
  const cli = await runner.spawn(
    process.execPath,
    [
      path.join(installRoot, "dist/src/cli/kata-ts-main.js"),
      "run",
      "--bundle",
      bundleDir,
      "--timings-file",
      timingsFile,
      `demo-${process.pid}`,
    ],
    { stdio: "inherit" },
  );
  const exit = await cli.exited;
  const code = exit.code ?? (exit.signal === null ? 1 : 128);
  const runMs = performance.now() - t1;
  process.stdout.write("--- end of container output ---\n");
  const timings = JSON.parse((await readFile(timingsFile, "utf8").catch(ignoreErrno("ENOENT"))) ?? "{}") as Record<
    string,
    number
  >;
  await rm(tmp, { recursive: true, force: true });
  const setupMs = Number(process.env["KATA_TS_SETUP_MS"] ?? NaN);
  const at = (k: string): number => timings[k] ?? NaN;
  const out = ["phases:"];
  if (!Number.isNaN(setupMs)) out.push(line("setup (packages, build, image)", setupMs));
  out.push(line("make busybox bundle", bundleMs));
  out.push(line("kata-ts run, total", runMs));
  if (timings["agentReady"] !== undefined) {
    out.push(line("  host start (share dir, qemu up)", at("vmStarted")));
    out.push(line("  VM boot to agent ready", at("agentReady") - at("vmStarted")));
    out.push(line("  sandbox + container create, start", at("containerStarted") - at("agentReady")));
    out.push(line("  container start to first output", at("firstOutput") - at("containerStarted")));
    out.push(line("  container exit to teardown done", at("destroyed") - at("exited")));
  }
  out.push(`container exit code: ${code}`);
  process.stdout.write(out.join("\n") + "\n");
  return code;
}

try {
  process.exitCode = await main();
} catch (e) {
  process.stderr.write(`demo: ${describeError(e)}\n`);
  process.exitCode = 1;
}
