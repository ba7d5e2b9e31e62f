// `npm run bench -- [boot] [--runs N]`: benchmarks, written to docs/benchmarks.md (summary) and
// bench-results/ (raw samples, not committed).

import { hostname, release } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { defaultImageDir } from "../src/image/guest-image.js";
import { installRoot } from "../src/cli/runtime-context.js";
import { benchBoot, renderBootReport, writeBootResults } from "./boot.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { runs: { type: "string", default: "5" } },
});
const which = positionals.length === 0 ? ["boot"] : positionals;
for (const name of which) {
  if (name !== "boot") {
    process.stderr.write(`bench: unknown benchmark ${name} (known: boot)\n`);
    process.exit(2);
  }
  const runs = Math.max(5, Number(values.runs));
  const samples = await benchBoot({
    runs,
    cli: path.join(installRoot, "dist/src/cli/kata-ts-main.js"),
    imageDir: process.env["KATA_TS_IMAGE_DIR"] ?? defaultImageDir,
  });
  const host = `${hostname()} (host kernel ${release()}, ${process.version})`;
  await writeBootResults(
    samples,
    path.join(installRoot, "docs/benchmarks.md"),
    path.join(installRoot, "bench-results"),
    host,
  );
  process.stdout.write(renderBootReport(samples, { date: "now", host }) + "\n");
}
