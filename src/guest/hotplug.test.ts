// onlineCpuMem against a directory laid out like /sys/devices/system (a fake sysfs: plain files, so
// nothing here proves the kernel's behaviour; the hotplug integration test does that in a real VM).

import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import { cpuListCount, onlineCpuMem } from "./hotplug.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function fakeSys(opts: {
  possible: string;
  online: string;
  cpus: Record<string, string>;
  mem: Record<string, string>;
}) {
  const root = await mkdtemp(path.join(tmpdir(), "kata-ts-sys-"));
  dirs.push(root);
  await mkdir(path.join(root, "cpu"));
  await mkdir(path.join(root, "memory"));
  await writeFile(path.join(root, "cpu", "possible"), `${opts.possible}\n`);
  await writeFile(path.join(root, "cpu", "online"), `${opts.online}\n`);
  for (const [name, online] of Object.entries(opts.cpus)) {
    await mkdir(path.join(root, "cpu", name));
    if (online !== "") await writeFile(path.join(root, "cpu", name, "online"), `${online}\n`);
  }
  for (const [name, state] of Object.entries(opts.mem)) {
    await mkdir(path.join(root, "memory", name));
    await writeFile(path.join(root, "memory", name, "state"), `${state}\n`);
  }
  return root;
}

describe("cpuListCount", () => {
  it("counts ranges and singles", () => {
    assert.equal(cpuListCount("0-3,5,7-8\n"), 7);
    assert.equal(cpuListCount("0"), 1);
    assert.equal(cpuListCount(""), 0);
  });
  it("refuses what is not a cpu list", () => {
    for (const bad of ["a", "3-1", "0-99999", "1,,2", "-1"]) assert.throws(() => cpuListCount(bad), /cpu list/);
  });
});

describe("onlineCpuMem (fake sysfs)", () => {
  it("onlines offline CPUs and memory blocks, leaving cpu0 (no online file) and online ones alone", async () => {
    const root = await fakeSys({
      possible: "0-3",
      // A fake: the online list is the kernel's; here it already says what the writes would make it.
      online: "0-2",
      cpus: { cpu0: "", cpu1: "1", cpu2: "0", cpufreq: "" },
      mem: { memory0: "online", memory1: "offline", memory2: "offline", memory_x: "offline" },
    });
    const r = await onlineCpuMem({ nbCpus: 3, cpuOnly: false }, new AbortController().signal, { root });
    assert.deepEqual(r, { cpusOnline: 3, cpusOnlined: 1, memoryBlocksOnlined: 2 });
    assert.equal(await readFile(path.join(root, "cpu", "cpu2", "online"), "utf8"), "1");
    assert.equal(await readFile(path.join(root, "memory", "memory1", "state"), "utf8"), "online");
    assert.equal(await readFile(path.join(root, "memory", "memory0", "state"), "utf8"), "online\n");
    assert.equal(await readFile(path.join(root, "memory", "memory_x", "state"), "utf8"), "offline\n");
  });

  it("cpu_only leaves memory alone", async () => {
    const root = await fakeSys({ possible: "0-1", online: "0-1", cpus: {}, mem: { memory1: "offline" } });
    const r = await onlineCpuMem({ nbCpus: 2, cpuOnly: true }, new AbortController().signal, { root });
    assert.equal(r.memoryBlocksOnlined, 0);
    assert.equal(await readFile(path.join(root, "memory", "memory1", "state"), "utf8"), "offline\n");
  });

  it("refuses nb_cpus beyond the possible CPUs", async () => {
    const root = await fakeSys({ possible: "0-1", online: "0", cpus: {}, mem: {} });
    await assert.rejects(
      onlineCpuMem({ nbCpus: 3, cpuOnly: true }, new AbortController().signal, { root }),
      (e) => isKataError(e, Code.InvalidArgument) && /nb_cpus: 3 .* 2 possible/.test(e.message),
    );
  });

  it("waits for CPUs that appear late, then gives up at the deadline naming the counts", async () => {
    const root = await fakeSys({ possible: "0-3", online: "0", cpus: {}, mem: {} });
    const late = setTimeout(() => {
      void writeFile(path.join(root, "cpu", "online"), "0-1\n");
    }, 120);
    const r = await onlineCpuMem({ nbCpus: 2, cpuOnly: true }, new AbortController().signal, { root, cpuWaitMs: 5000 });
    clearTimeout(late);
    assert.equal(r.cpusOnline, 2);
    await assert.rejects(
      onlineCpuMem({ nbCpus: 4, cpuOnly: true }, new AbortController().signal, { root, cpuWaitMs: 200 }),
      (e) => isKataError(e, Code.DeadlineExceeded) && /2 of the 4 asked for/.test(e.message),
    );
  });

  it("ends when cancelled", async () => {
    const root = await fakeSys({ possible: "0-3", online: "0", cpus: {}, mem: {} });
    const ac = new AbortController();
    setTimeout(() => {
      ac.abort();
    }, 100);
    await assert.rejects(onlineCpuMem({ nbCpus: 4, cpuOnly: true }, ac.signal, { root }), (e) =>
      isKataError(e, Code.Cancelled),
    );
  });
});
