import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, isKataError } from "../base/errors.js";
import type { RunOptions, RunResult } from "../platform/process.js";
import {
  CniRunner,
  bridgeConflist,
  pluginStdin,
  podAddressOf,
  reservedAddresses,
  type CniConflist,
  type CniResult,
} from "./cni-netns.js";

/** A bridge ADD result as the 1.1.1 plugin prints it (captured from a run, addresses shortened). */
const bridgeResult: CniResult = {
  cniVersion: "1.0.0",
  interfaces: [
    { name: "kb1x0", mac: "aa:00:00:00:00:01" },
    { name: "veth1234", mac: "aa:00:00:00:00:02" },
    { name: "eth0", mac: "02:42:0a:00:00:05", sandbox: "/var/run/netns/p" },
  ],
  ips: [{ interface: 2, address: "10.200.1.5/24", gateway: "10.200.1.1" }],
  routes: [{ dst: "0.0.0.0/0" }],
};

describe("bridgeConflist", () => {
  it("is a bridge with host-local IPAM, gateway on the host and no masquerade", () => {
    const c = bridgeConflist({ name: "n", bridge: "kb0", subnet: "10.200.1.0/24", mtu: 1400 });

    assert.equal(c.cniVersion, "1.0.0");
    assert.deepEqual(c.plugins, [
      {
        type: "bridge",
        bridge: "kb0",
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        mtu: 1400,
        ipam: { type: "host-local", ranges: [[{ subnet: "10.200.1.0/24" }]], routes: [{ dst: "0.0.0.0/0" }] },
      },
    ]);
  });

  it("refuses a bridge name longer than IFNAMSIZ and a subnet that is not IPv4 CIDR, naming the field", () => {
    assert.throws(
      () => bridgeConflist({ name: "n", bridge: "a-very-long-bridge", subnet: "10.0.0.0/24" }),
      (e: unknown) => isKataError(e, Code.InvalidArgument) && /^bridge: /.test(e.message),
    );
    assert.throws(
      () => bridgeConflist({ name: "n", bridge: "kb0", subnet: "10.0.0.0" }),
      (e: unknown) => isKataError(e, Code.InvalidArgument) && /^subnet: /.test(e.message),
    );
  });
});

describe("pluginStdin", () => {
  it("gives each plugin the list's name and version, and the previous result as libcni does", () => {
    const list: CniConflist = { cniVersion: "1.0.0", name: "net", plugins: [{ type: "bridge" }, { type: "portmap" }] };

    assert.deepEqual(JSON.parse(pluginStdin(list, 0, undefined)), { type: "bridge", cniVersion: "1.0.0", name: "net" });
    assert.deepEqual(JSON.parse(pluginStdin(list, 1, bridgeResult)), {
      type: "portmap",
      cniVersion: "1.0.0",
      name: "net",
      prevResult: bridgeResult,
    });
  });
});

describe("podAddressOf", () => {
  it("finds the sandbox's interface and its IPv4 address by the result's interface index", () => {
    assert.deepEqual(podAddressOf(bridgeResult, "/var/run/netns/p", "eth0"), {
      ip: "10.200.1.5",
      prefixLength: 24,
      gateway: "10.200.1.1",
      mac: "02:42:0a:00:00:05",
    });
  });

  it("fails naming the interface when the result has none in that namespace", () => {
    assert.throws(
      () => podAddressOf(bridgeResult, "/var/run/netns/other", "eth0"),
      (e: unknown) => isKataError(e, Code.Internal) && /no interface eth0 in \/var\/run\/netns\/other/.test(e.message),
    );
  });
});

describe("CniRunner", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "cni-unit-"));
    for (const p of ["bridge", "portmap"]) await writeFile(path.join(dir, p), "");
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const list: CniConflist = { cniVersion: "1.0.0", name: "net", plugins: [{ type: "bridge" }, { type: "portmap" }] };
  const rt = { containerId: "c1", netnsPath: "/var/run/netns/p", ifName: "eth0" };

  class Recorder {
    readonly calls: { file: string; env: NodeJS.ProcessEnv; stdin: unknown }[] = [];
    readonly reply: (file: string, cmd: string) => Partial<RunResult>;
    constructor(reply: (file: string, cmd: string) => Partial<RunResult>) {
      this.reply = reply;
    }
    run(file: string, _args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
      const env = opts.env ?? {};
      this.calls.push({ file, env, stdin: JSON.parse(String(opts.input)) });
      return Promise.resolve({
        code: 0,
        signal: null,
        stdout: "",
        stderr: "",
        ...this.reply(file, env["CNI_COMMAND"] ?? ""),
      });
    }
  }

  it("runs ADD in order, each plugin with the previous one's result, and DEL in reverse with the cached result", async () => {
    const fake = new Recorder((file, cmd) =>
      cmd === "ADD" ? { stdout: JSON.stringify({ ...bridgeResult, by: path.basename(file) }) } : {},
    );
    const cni = new CniRunner({ runner: fake }, dir);

    const result = await cni.add(list, rt);
    await cni.del(list, rt, result);

    assert.deepEqual(
      fake.calls.map((c) => [path.basename(c.file), c.env["CNI_COMMAND"]]),
      [
        ["bridge", "ADD"],
        ["portmap", "ADD"],
        ["portmap", "DEL"],
        ["bridge", "DEL"],
      ],
    );
    assert.equal((fake.calls[0]?.stdin as { prevResult?: unknown }).prevResult, undefined);
    assert.equal((fake.calls[1]?.stdin as { prevResult: { by: string } }).prevResult.by, "bridge");
    assert.equal((result as { by?: string }).by, "portmap");
    for (const c of fake.calls.slice(2))
      assert.equal((c.stdin as { prevResult: { by: string } }).prevResult.by, "portmap");
    assert.deepEqual(
      [fake.calls[0]?.env["CNI_CONTAINERID"], fake.calls[0]?.env["CNI_NETNS"], fake.calls[0]?.env["CNI_IFNAME"]],
      ["c1", "/var/run/netns/p", "eth0"],
    );
    assert.equal(fake.calls[0]?.env["CNI_PATH"], dir);
  });

  it("reports a plugin's JSON error with the network, plugin and message", async () => {
    const fake = new Recorder(() => ({
      code: 1,
      stdout: JSON.stringify({ code: 11, msg: "failed to allocate", details: "range is full" }),
    }));

    await assert.rejects(
      new CniRunner({ runner: fake }, dir).add(list, rt),
      (e: unknown) =>
        isKataError(e, Code.Internal) && /^CNI ADD net \(bridge\): .*failed to allocate: range is full/.test(e.message),
    );
  });

  it("names the package when a plugin binary is missing", async () => {
    const fake = new Recorder(() => ({}));
    const missing: CniConflist = { ...list, plugins: [{ type: "nosuch" }] };

    await assert.rejects(
      new CniRunner({ runner: fake }, dir).add(missing, rt),
      (e: unknown) => isKataError(e, Code.NotFound) && /nosuch.*containernetworking-plugins/.test(e.message),
    );
    assert.equal(fake.calls.length, 0);
  });
});

describe("reservedAddresses", () => {
  it("lists host-local's address files, not its lock or last-reserved files, and [] for no directory", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "cni-hl-"));
    try {
      for (const f of ["lock", "last_reserved_ip.0", "10.200.1.5", "10.200.1.3", "fd00::3"]) {
        await writeFile(path.join(dir, f), "");
      }

      assert.deepEqual(await reservedAddresses(dir), ["10.200.1.3", "10.200.1.5", "fd00::3"]);
      assert.deepEqual(await reservedAddresses(path.join(dir, "absent")), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
