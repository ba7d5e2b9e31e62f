// The host's kernel samepage merging (KSM) for `npm run bench -- factory --ksm`: QEMU marks guest RAM
// mergeable (its mem-merge default), so on a host where ksmd runs, identical pages of idle pods (the
// guest kernel, node's text, the initramfs) are kept once. KSM is the host's choice, not kata-ts's
// (docs/factory.md#ksm): the bench turns it on only for its own measurement and puts back what it found.
// A bench killed meanwhile leaves ksmd on (as it leaves its VMs): `echo 2 > /sys/kernel/mm/ksm/run`
// unmerges and stops it, then `echo 0` as it was.

import { readFile, writeFile } from "node:fs/promises";
import { ignoreErrno } from "../src/base/errors.js";
import { ksmState } from "../src/cli/commands/env.js";

const dir = "/sys/kernel/mm/ksm";
const knobs = ["run", "pages_to_scan", "sleep_millisecs"] as const;
type Knobs = Record<(typeof knobs)[number], string>;

async function read(name: string): Promise<string | undefined> {
  return (await readFile(`${dir}/${name}`, "utf8").catch(ignoreErrno("ENOENT")))?.trim();
}

/** Whether ksmd is merging on this host now (`run` = 1); undefined where the kernel has no KSM. */
export async function ksmRunning(): Promise<boolean | undefined> {
  const { Run } = await ksmState(dir);
  return Run === "absent" ? undefined : Run === "on";
}

/**
 * Runs `measure` after ksmd has merged what it can (pages_sharing unchanged over two 5 s looks, at
 * most `maxWaitMs`), scanning fast so the bench does not wait minutes; then puts the host's settings
 * back, unmerging first if KSM was off. Returns undefined where the kernel has no KSM.
 */
export async function withKsmMerged<T>(
  measure: () => Promise<T>,
  maxWaitMs = 120_000,
): Promise<{ value: T; sharingMiB: number } | undefined> {
  const saved: Partial<Knobs> = {};
  for (const k of knobs) {
    const v = await read(k);
    if (v === undefined) return undefined;
    saved[k] = v;
  }
  try {
    await writeFile(`${dir}/pages_to_scan`, "5000");
    await writeFile(`${dir}/sleep_millisecs`, "20");
    await writeFile(`${dir}/run`, "1");
    let last = -1;
    for (let waited = 0; waited < maxWaitMs; waited += 5000) {
      await new Promise((r) => setTimeout(r, 5000));
      const now = (await ksmState(dir)).SharingMiB;
      if (now === last && now > 0) break;
      last = now;
    }
    return { value: await measure(), sharingMiB: (await ksmState(dir)).SharingMiB };
  } finally {
    // `run` = 2 unmerges every page, so a host that had KSM off gets its memory back as it was.
    if (saved.run !== "1") await writeFile(`${dir}/run`, "2");
    for (const k of knobs) if (saved[k] !== undefined) await writeFile(`${dir}/${k}`, saved[k]);
  }
}
