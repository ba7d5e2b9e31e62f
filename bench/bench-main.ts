// `npm run bench -- [boot] [net] [ctr] [cri] [cli] [factory] [podman] [--runs N] [--sandboxes N] [--ksm]`: benchmarks, written to docs/benchmarks.md (summary) and
// bench-results/ (raw samples, not committed).

import { hostname, release } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { defaultImageDir } from "../src/image/guest-image.js";
import { installRoot } from "../src/cli/runtime-context.js";
import { benchBoot, renderBootReport, writeBootResults } from "./boot.js";
import { benchCli, writeCliResults } from "./cli.js";
import { benchCri, writeCriResults } from "./cri.js";
import { benchCtr, writeCtrResults } from "./ctr.js";
import { benchFactory, writeFactoryResults } from "./factory.js";
import { benchNet, writeNetResults } from "./net.js";
import { benchPodman, writePodmanResults } from "./podman.js";

const known = ["boot", "net", "ctr", "cri", "cli", "factory", "podman"];
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { runs: { type: "string" }, sandboxes: { type: "string" }, ksm: { type: "boolean" } },
});
const which = positionals.length === 0 ? ["boot"] : positionals;
const unknown = which.filter((n) => !known.includes(n));
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown benchmark ${unknown.join(", ")} (known: ${known.join(", ")})\n`);
  process.exit(2);
}
// What users run (bin/launch.sh): from the host's startup snapshot when the build made one.
const cli = path.join(installRoot, "bin/kata-ts");
const doc = path.join(installRoot, "docs/benchmarks.md");
const raw = path.join(installRoot, "bench-results");
const host = `${hostname()} (host kernel ${release()}, ${process.version})`;
for (const name of which) {
  if (name === "boot") {
    const runs = Math.max(5, Number(values.runs ?? "5"));
    const samples = await benchBoot({ runs, cli, imageDir: process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir });
    await writeBootResults(samples, doc, raw, host);
    process.stdout.write(renderBootReport(samples, { date: "now", host }) + "\n");
  } else if (name === "factory") {
    // Each round is a cold boot and a clone (seconds each under TCG), then 2 x N idle sandboxes (issue
    // #11 names 4); --ksm measures them again after the host's KSM merged them (bench/ksm.ts).
    const runs = Math.max(1, Number(values.runs ?? "3"));
    const sandboxes = Math.min(8, Math.max(2, Number(values.sandboxes ?? "4")));
    const imageDir = process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir;
    const r = await benchFactory({ runs, sandboxes, ksm: values.ksm === true, cli, imageDir });
    process.stdout.write((await writeFactoryResults(r, doc, raw, host)) + "\n");
  } else if (name === "cri") {
    const runs = Math.max(1, Number(values.runs ?? "3"));
    process.stdout.write((await writeCriResults(await benchCri({ runs }), doc, raw, host)) + "\n");
  } else if (name === "cli") {
    const runs = Math.max(3, Number(values.runs ?? "10"));
    const r = await benchCli({ runs, cli, imageDir: process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir });
    process.stdout.write((await writeCliResults(r, doc, raw, host)) + "\n");
  } else if (name === "podman") {
    const runs = Math.max(1, Number(values.runs ?? "3"));
    process.stdout.write((await writePodmanResults(await benchPodman({ runs }), doc, raw, host)) + "\n");
  } else if (name === "ctr") {
    const runs = Math.max(1, Number(values.runs ?? "3"));
    const r = await benchCtr({ runs, imageDir: process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir });
    process.stdout.write((await writeCtrResults(r, doc, raw, host)) + "\n");
  } else {
    // Each round boots a VM (seconds under TCG): three rounds unless told otherwise.
    const runs = Math.max(1, Number(values.runs ?? "3"));
    const rounds = await benchNet({ runs, cli });
    process.stdout.write((await writeNetResults(rounds, doc, raw, host)) + "\n");
  }
}
