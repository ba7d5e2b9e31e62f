import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code } from "../base/errors.js";
import { nullLogger } from "../base/log.js";
import { kataError } from "../../test/helpers/fakes.js";
import { OomEvents, oomKills } from "./oom.js";

const events = (kills: number): string => `low 0\nhigh 0\nmax 3\noom 1\noom_kill ${kills}\noom_group_kill 0\n`;

describe("oomKills", () => {
  it("reads the oom_kill count of a memory.events file", () => {
    assert.equal(oomKills(events(2)), 2);
  });

  it("is undefined for a file without one", () => {
    assert.equal(oomKills("low 0\nhigh 0\n"), undefined);
  });
});

describe("OomEvents (a temp dir standing in for cgroupfs)", () => {
  let dir = "";
  let oom: OomEvents;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-oom-"));
    oom = new OomEvents(nullLogger);
  });
  afterEach(async () => {
    oom.unwatch("c1");
    oom.unwatch("c2");
    await rm(dir, { recursive: true, force: true });
  });

  it("names the container once per kill, counting from when it was watched", async () => {
    const cg = path.join(dir, "c1");
    await mkdir(cg);
    await writeFile(path.join(cg, "memory.events"), events(0));
    oom.watch("c1", cg);

    const first = oom.next();
    await writeFile(path.join(cg, "memory.events"), events(2));

    assert.equal(await first, "c1");
    assert.equal(await oom.next(), "c1");
  });

  it("waits for a cgroup that does not exist yet (crun makes it as the container starts)", async () => {
    const cg = path.join(dir, "c2");
    oom.watch("c2", cg);
    const next = oom.next();

    await mkdir(cg);
    await writeFile(path.join(cg, "memory.events"), events(1));

    assert.equal(await next, "c2");
  });

  it("ends a wait with CANCELLED when its signal aborts, and delivers nothing to it later", async () => {
    const ctl = new AbortController();
    const next = oom.next(ctl.signal);

    ctl.abort();

    await assert.rejects(next, kataError(Code.Cancelled));
  });
});
