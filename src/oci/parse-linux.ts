// Validation of config.json's `linux` object (config-linux.md), for parse-spec.ts. Every field the runtime
// reads is type-checked here, so that later readers (the grpc.Spec mapping, the storage planner) can trust
// the Spec type; ranges the wire cannot carry are the mapping's to refuse.

import { Checker, type Json } from "./json-checker.js";

const namespaceTypes = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"];

export function checkIdMappings(c: Checker, v: Json, path: string): void {
  c.objects(v, path, (m, at) => {
    for (const k of ["containerID", "hostID", "size"]) c.int(m[k], `${at}.${k}`, true, 0);
  });
}

/** `linux.resources`, also what containerd sends in an UpdateTask request. */
export function checkResources(c: Checker, r: Json, path: string, required = false): void {
  if (!c.object(r, path, required)) return;
  c.objects(r["devices"], `${path}.devices`, (d, at) => {
    c.bool(d["allow"], `${at}.allow`, true);
    c.strings(d, at, ["type", "access"]);
    c.ints(d, at, ["major", "minor"]);
    // The device cgroup's own grammar: a rule the kernel would refuse is refused here, by name.
    const type = d["type"];
    if (typeof type === "string" && !["a", "b", "c"].includes(type)) {
      c.add(`${at}.type`, `must be "a", "b" or "c", not ${JSON.stringify(type)}`);
    }
    const access = d["access"];
    if (typeof access === "string" && !/^[rwm]*$/.test(access)) {
      c.add(`${at}.access`, `must be made of r, w and m, not ${JSON.stringify(access)}`);
    }
  });
  const mem = r["memory"];
  if (c.object(mem, `${path}.memory`, false)) {
    c.ints(mem, `${path}.memory`, ["limit", "reservation", "swap", "kernel", "kernelTCP"]);
    c.int(mem["swappiness"], `${path}.memory.swappiness`, false, 0);
    c.bool(mem["disableOOMKiller"], `${path}.memory.disableOOMKiller`);
    c.bool(mem["useHierarchy"], `${path}.memory.useHierarchy`);
  }
  const cpu = r["cpu"];
  if (c.object(cpu, `${path}.cpu`, false)) {
    c.ints(cpu, `${path}.cpu`, ["shares", "period", "realtimePeriod"], 0);
    c.ints(cpu, `${path}.cpu`, ["quota", "realtimeRuntime"]);
    c.strings(cpu, `${path}.cpu`, ["cpus", "mems"]);
  }
  const pids = r["pids"];
  if (c.object(pids, `${path}.pids`, false)) c.int(pids["limit"], `${path}.pids.limit`, true);
  const bio = r["blockIO"];
  const bp = `${path}.blockIO`;
  if (c.object(bio, bp, false)) {
    c.ints(bio, bp, ["weight", "leafWeight"], 0);
    c.objects(bio["weightDevice"], `${bp}.weightDevice`, (d, at) => {
      c.int(d["major"], `${at}.major`, true);
      c.int(d["minor"], `${at}.minor`, true);
      c.ints(d, at, ["weight", "leafWeight"], 0);
    });
    for (const k of [
      "throttleReadBpsDevice",
      "throttleWriteBpsDevice",
      "throttleReadIOPSDevice",
      "throttleWriteIOPSDevice",
    ]) {
      c.objects(bio[k], `${bp}.${k}`, (d, at) => {
        c.int(d["major"], `${at}.major`, true);
        c.int(d["minor"], `${at}.minor`, true);
        c.int(d["rate"], `${at}.rate`, true, 0);
      });
    }
  }
  c.objects(r["hugepageLimits"], `${path}.hugepageLimits`, (h, at) => {
    c.string(h["pageSize"], `${at}.pageSize`, true);
    c.int(h["limit"], `${at}.limit`, true, 0);
  });
  const net = r["network"];
  if (c.object(net, `${path}.network`, false)) {
    c.int(net["classID"], `${path}.network.classID`, false, 0);
    c.objects(net["priorities"], `${path}.network.priorities`, (p, at) => {
      c.string(p["name"], `${at}.name`, true);
      c.int(p["priority"], `${at}.priority`, true, 0);
    });
  }
  c.stringMap(r["unified"], `${path}.unified`);
}

function checkSeccomp(c: Checker, sc: Json, path: string): void {
  if (!c.object(sc, path, false)) return;
  c.string(sc["defaultAction"], `${path}.defaultAction`, true);
  c.int(sc["defaultErrnoRet"], `${path}.defaultErrnoRet`, false, 0);
  c.stringArray(sc["architectures"], `${path}.architectures`);
  c.stringArray(sc["flags"], `${path}.flags`);
  c.strings(sc, path, ["listenerPath", "listenerMetadata"]);
  c.objects(sc["syscalls"], `${path}.syscalls`, (s, at) => {
    c.stringArray(s["names"], `${at}.names`, true);
    c.string(s["action"], `${at}.action`, true);
    c.int(s["errnoRet"], `${at}.errnoRet`, false, 0);
    c.objects(s["args"], `${at}.args`, (a, ap) => {
      c.int(a["index"], `${ap}.index`, true, 0);
      c.int(a["value"], `${ap}.value`, true, 0);
      c.int(a["valueTwo"], `${ap}.valueTwo`, false, 0);
      c.string(a["op"], `${ap}.op`, true);
    });
  });
}

export function checkLinux(c: Checker, linux: Json): void {
  if (!c.object(linux, "linux", false)) return;
  checkIdMappings(c, linux["uidMappings"], "linux.uidMappings");
  checkIdMappings(c, linux["gidMappings"], "linux.gidMappings");
  c.stringMap(linux["sysctl"], "linux.sysctl");
  checkResources(c, linux["resources"], "linux.resources");
  c.strings(linux, "linux", ["cgroupsPath", "rootfsPropagation", "mountLabel"]);
  c.objects(linux["namespaces"], "linux.namespaces", (n, at) => {
    c.string(n["type"], `${at}.type`, true);
    if (typeof n["type"] === "string" && !namespaceTypes.includes(n["type"]))
      c.add(`${at}.type`, `unknown namespace ${JSON.stringify(n["type"])}`);
    c.string(n["path"], `${at}.path`, false);
  });
  c.objects(linux["devices"], "linux.devices", (d, at) => {
    c.string(d["path"], `${at}.path`, true);
    c.string(d["type"], `${at}.type`, true);
    // Required unless the device is a fifo ("p"), which has no device number.
    const fifo = d["type"] === "p";
    c.int(d["major"], `${at}.major`, !fifo);
    c.int(d["minor"], `${at}.minor`, !fifo);
    c.ints(d, at, ["fileMode", "uid", "gid"], 0);
  });
  checkSeccomp(c, linux["seccomp"], "linux.seccomp");
  c.stringArray(linux["maskedPaths"], "linux.maskedPaths");
  c.stringArray(linux["readonlyPaths"], "linux.readonlyPaths");
  if (c.object(linux["intelRdt"], "linux.intelRdt", false)) {
    c.strings(linux["intelRdt"], "linux.intelRdt", ["closID", "l3CacheSchema", "memBwSchema"]);
  }
  if (c.object(linux["personality"], "linux.personality", false)) {
    c.string(linux["personality"]["domain"], "linux.personality.domain", true);
    c.stringArray(linux["personality"]["flags"], "linux.personality.flags");
  }
}
