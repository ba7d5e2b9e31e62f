// Validates config.json (runtime-spec 1.x) from untrusted JSON into a Spec, reporting every problem at
// once with its JSON path. Unknown keys are allowed (the spec is extensible); wrong types are not. The
// same rules validate the parts containerd sends on their own: an exec's process, an update's resources.

import { Code, KataError } from "../base/errors.js";
import { maxJsonDepth, tooDeepAt } from "./json-depth.js";
import type { LinuxResources, Process, Spec } from "./spec.js";

export interface Issue {
  readonly path: string;
  readonly message: string;
}

type Json = unknown;

function isObject(v: Json): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

class Checker {
  readonly issues: Issue[] = [];

  add(path: string, message: string): void {
    this.issues.push({ path, message });
  }

  string(v: Json, path: string, required: boolean): void {
    if (v === undefined) {
      if (required) this.add(path, "is required");
    } else if (typeof v !== "string") this.add(path, `must be a string, not ${typeName(v)}`);
  }

  bool(v: Json, path: string, required = false): void {
    if (v === undefined) {
      if (required) this.add(path, "is required");
    } else if (typeof v !== "boolean") this.add(path, `must be a boolean, not ${typeName(v)}`);
  }

  int(v: Json, path: string, required: boolean, min = -(2 ** 53)): void {
    if (v === undefined) {
      if (required) this.add(path, "is required");
    } else if (typeof v !== "number" || !Number.isSafeInteger(v))
      this.add(path, `must be an integer, not ${typeName(v)}`);
    else if (v < min) this.add(path, `must be >= ${min}`);
  }

  stringArray(v: Json, path: string): void {
    if (v === undefined) return;
    if (!Array.isArray(v)) {
      this.add(path, `must be an array of strings, not ${typeName(v)}`);
      return;
    }
    v.forEach((s, i) => {
      if (typeof s !== "string") this.add(`${path}[${i}]`, `must be a string, not ${typeName(s)}`);
    });
  }

  stringMap(v: Json, path: string): void {
    if (v === undefined) return;
    if (!isObject(v)) {
      this.add(path, `must be an object of strings, not ${typeName(v)}`);
      return;
    }
    for (const [k, s] of Object.entries(v)) {
      if (typeof s !== "string") this.add(`${path}.${k}`, `must be a string, not ${typeName(s)}`);
    }
  }

  object(v: Json, path: string, required: boolean): v is Record<string, Json> {
    if (v === undefined) {
      if (required) this.add(path, "is required");
      return false;
    }
    if (!isObject(v)) {
      this.add(path, `must be an object, not ${typeName(v)}`);
      return false;
    }
    return true;
  }

  array(v: Json, path: string): v is Json[] {
    if (v === undefined) return false;
    if (!Array.isArray(v)) {
      this.add(path, `must be an array, not ${typeName(v)}`);
      return false;
    }
    return true;
  }
}

function typeName(v: Json): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

function checkProcess(c: Checker, p: Json, path: string, required: boolean): void {
  if (!c.object(p, path, required)) return;
  c.bool(p["terminal"], `${path}.terminal`);
  if (c.object(p["consoleSize"], `${path}.consoleSize`, false)) {
    c.int(p["consoleSize"]["height"], `${path}.consoleSize.height`, true, 0);
    c.int(p["consoleSize"]["width"], `${path}.consoleSize.width`, true, 0);
  }
  if (c.object(p["user"], `${path}.user`, true)) {
    c.int(p["user"]["uid"], `${path}.user.uid`, true, 0);
    c.int(p["user"]["gid"], `${path}.user.gid`, true, 0);
    c.int(p["user"]["umask"], `${path}.user.umask`, false, 0);
    if (c.array(p["user"]["additionalGids"], `${path}.user.additionalGids`)) {
      p["user"]["additionalGids"].forEach((g, i) => {
        c.int(g, `${path}.user.additionalGids[${i}]`, true, 0);
      });
    }
  }
  c.stringArray(p["args"], `${path}.args`);
  c.stringArray(p["env"], `${path}.env`);
  c.string(p["cwd"], `${path}.cwd`, true);
  if (typeof p["cwd"] === "string" && !p["cwd"].startsWith("/")) c.add(`${path}.cwd`, "must be an absolute path");
  c.bool(p["noNewPrivileges"], `${path}.noNewPrivileges`);
  c.int(p["oomScoreAdj"], `${path}.oomScoreAdj`, false);
  if (c.object(p["capabilities"], `${path}.capabilities`, false)) {
    for (const k of ["bounding", "effective", "inheritable", "permitted", "ambient"]) {
      c.stringArray(p["capabilities"][k], `${path}.capabilities.${k}`);
    }
  }
  if (c.array(p["rlimits"], `${path}.rlimits`)) {
    p["rlimits"].forEach((r, i) => {
      if (!c.object(r, `${path}.rlimits[${i}]`, true)) return;
      c.string(r["type"], `${path}.rlimits[${i}].type`, true);
      c.int(r["hard"], `${path}.rlimits[${i}].hard`, true, 0);
      c.int(r["soft"], `${path}.rlimits[${i}].soft`, true, 0);
    });
  }
}

function checkMounts(c: Checker, mounts: Json): void {
  if (!c.array(mounts, "mounts")) return;
  mounts.forEach((m, i) => {
    const path = `mounts[${i}]`;
    if (!c.object(m, path, true)) return;
    c.string(m["destination"], `${path}.destination`, true);
    if (typeof m["destination"] === "string" && !m["destination"].startsWith("/")) {
      c.add(`${path}.destination`, "must be an absolute path");
    }
    c.string(m["type"], `${path}.type`, false);
    c.string(m["source"], `${path}.source`, false);
    c.stringArray(m["options"], `${path}.options`);
  });
}

function checkHooks(c: Checker, hooks: Json): void {
  if (!c.object(hooks, "hooks", false)) return;
  for (const kind of ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]) {
    const list = hooks[kind];
    if (!c.array(list, `hooks.${kind}`)) continue;
    list.forEach((h, i) => {
      const path = `hooks.${kind}[${i}]`;
      if (!c.object(h, path, true)) return;
      c.string(h["path"], `${path}.path`, true);
      if (typeof h["path"] === "string" && !h["path"].startsWith("/"))
        c.add(`${path}.path`, "must be an absolute path");
      c.stringArray(h["args"], `${path}.args`);
      c.stringArray(h["env"], `${path}.env`);
      c.int(h["timeout"], `${path}.timeout`, false, 1);
    });
  }
}

function checkLinux(c: Checker, linux: Json): void {
  if (!c.object(linux, "linux", false)) return;
  c.string(linux["cgroupsPath"], "linux.cgroupsPath", false);
  c.stringMap(linux["sysctl"], "linux.sysctl");
  c.stringArray(linux["maskedPaths"], "linux.maskedPaths");
  c.stringArray(linux["readonlyPaths"], "linux.readonlyPaths");
  const known = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"];
  if (c.array(linux["namespaces"], "linux.namespaces")) {
    linux["namespaces"].forEach((n, i) => {
      const path = `linux.namespaces[${i}]`;
      if (!c.object(n, path, true)) return;
      c.string(n["type"], `${path}.type`, true);
      if (typeof n["type"] === "string" && !known.includes(n["type"]))
        c.add(`${path}.type`, `unknown namespace ${JSON.stringify(n["type"])}`);
      c.string(n["path"], `${path}.path`, false);
    });
  }
  checkResources(c, linux["resources"], "linux.resources", false);
}

/** `list` is an array of objects: checks each with `each` under "<path>[i]". */
function eachObject(c: Checker, list: Json, path: string, each: (o: Record<string, Json>, at: string) => void): void {
  if (!c.array(list, path)) return;
  list.forEach((o, i) => {
    if (c.object(o, `${path}[${i}]`, true)) each(o, `${path}[${i}]`);
  });
}

/** linux.resources (config-linux.md "Control groups"); unsigned fields must be >= 0, -1 stays allowed elsewhere. */
function checkResources(c: Checker, r: Json, path: string, required: boolean): void {
  if (!c.object(r, path, required)) return;
  eachObject(c, r["devices"], `${path}.devices`, (d, at) => {
    c.bool(d["allow"], `${at}.allow`, true);
    c.string(d["type"], `${at}.type`, false);
    if (typeof d["type"] === "string" && !["a", "b", "c"].includes(d["type"])) {
      c.add(`${at}.type`, `must be "a", "b" or "c", not ${JSON.stringify(d["type"])}`);
    }
    c.int(d["major"], `${at}.major`, false);
    c.int(d["minor"], `${at}.minor`, false);
    c.string(d["access"], `${at}.access`, false);
    if (typeof d["access"] === "string" && !/^[rwm]*$/.test(d["access"])) {
      c.add(`${at}.access`, `must be made of r, w and m, not ${JSON.stringify(d["access"])}`);
    }
  });
  if (c.object(r["memory"], `${path}.memory`, false)) {
    const m = r["memory"];
    for (const k of ["limit", "reservation", "swap", "kernel", "kernelTCP"]) c.int(m[k], `${path}.memory.${k}`, false);
    c.int(m["swappiness"], `${path}.memory.swappiness`, false, 0);
    for (const k of ["disableOOMKiller", "useHierarchy", "checkBeforeUpdate"]) c.bool(m[k], `${path}.memory.${k}`);
  }
  if (c.object(r["cpu"], `${path}.cpu`, false)) {
    const cpu = r["cpu"];
    for (const k of ["quota", "realtimeRuntime", "idle"]) c.int(cpu[k], `${path}.cpu.${k}`, false);
    for (const k of ["shares", "burst", "period", "realtimePeriod"]) c.int(cpu[k], `${path}.cpu.${k}`, false, 0);
    c.string(cpu["cpus"], `${path}.cpu.cpus`, false);
    c.string(cpu["mems"], `${path}.cpu.mems`, false);
  }
  if (c.object(r["pids"], `${path}.pids`, false)) c.int(r["pids"]["limit"], `${path}.pids.limit`, true);
  if (c.object(r["blockIO"], `${path}.blockIO`, false)) {
    const b = r["blockIO"];
    c.int(b["weight"], `${path}.blockIO.weight`, false, 0);
    c.int(b["leafWeight"], `${path}.blockIO.leafWeight`, false, 0);
    eachObject(c, b["weightDevice"], `${path}.blockIO.weightDevice`, (d, at) => {
      c.int(d["major"], `${at}.major`, true);
      c.int(d["minor"], `${at}.minor`, true);
      c.int(d["weight"], `${at}.weight`, false, 0);
      c.int(d["leafWeight"], `${at}.leafWeight`, false, 0);
    });
    for (const k of [
      "throttleReadBpsDevice",
      "throttleWriteBpsDevice",
      "throttleReadIOPSDevice",
      "throttleWriteIOPSDevice",
    ]) {
      eachObject(c, b[k], `${path}.blockIO.${k}`, (d, at) => {
        c.int(d["major"], `${at}.major`, true);
        c.int(d["minor"], `${at}.minor`, true);
        c.int(d["rate"], `${at}.rate`, true, 0);
      });
    }
  }
  eachObject(c, r["hugepageLimits"], `${path}.hugepageLimits`, (h, at) => {
    c.string(h["pageSize"], `${at}.pageSize`, true);
    c.int(h["limit"], `${at}.limit`, true, 0);
  });
  if (c.object(r["network"], `${path}.network`, false)) {
    c.int(r["network"]["classID"], `${path}.network.classID`, false, 0);
    eachObject(c, r["network"]["priorities"], `${path}.network.priorities`, (p, at) => {
      c.string(p["name"], `${at}.name`, true);
      c.int(p["priority"], `${at}.priority`, true, 0);
    });
  }
  c.stringMap(r["unified"], `${path}.unified`);
}

/** Throws INVALID_ARGUMENT naming `at` and every problem, if there are any. */
function throwIssues(c: Checker, at: string): void {
  if (c.issues.length > 0) {
    throw new KataError(Code.InvalidArgument, `${at}: ${c.issues.map((i) => `${i.path} ${i.message}`).join("; ")}`);
  }
}

/** Refuses, before anything walks it, a value nested deeper than maxJsonDepth (see json-depth.ts). */
function checkDepth(json: Json, at: string, path: string): void {
  const deep = tooDeepAt(json, path);
  if (deep === undefined) return;
  const shown = deep.length <= 100 ? deep : `${deep.slice(0, 100)}...`;
  throw new KataError(
    Code.InvalidArgument,
    `${at}: ${shown} nests arrays and objects more than ${maxJsonDepth} deep (the limit)`,
  );
}

/** Throws INVALID_ARGUMENT listing every problem in `json`, or returns it as a Spec. */
export function parseSpec(json: Json, file = "config.json"): Spec {
  checkDepth(json, file, "");
  const c = new Checker();
  if (!isObject(json))
    throw new KataError(Code.InvalidArgument, `${file}: must be a JSON object, not ${typeName(json)}`);
  c.string(json["ociVersion"], "ociVersion", true);
  if (c.object(json["root"], "root", true)) {
    c.string(json["root"]["path"], "root.path", true);
    if (json["root"]["path"] === "") c.add("root.path", "must not be empty");
    c.bool(json["root"]["readonly"], "root.readonly");
  }
  checkProcess(c, json["process"], "process", false);
  c.string(json["hostname"], "hostname", false);
  checkMounts(c, json["mounts"]);
  checkHooks(c, json["hooks"]);
  c.stringMap(json["annotations"], "annotations");
  checkLinux(c, json["linux"]);
  throwIssues(c, file);
  // CAST: every field the runtime reads was checked above.
  return json as unknown as Spec;
}

/**
 * Validates a process on its own (an exec's, from containerd's ExecProcess request) by config.json's
 * `process` rules. Throws INVALID_ARGUMENT: "<at>: process.args must be an array of strings, not a string".
 * `path` names the object in messages.
 */
export function parseProcess(json: Json, at: string, path = "process"): Process {
  checkDepth(json, at, path);
  const c = new Checker();
  checkProcess(c, json, path, true);
  throwIssues(c, at);
  // CAST: checkProcess checked every field the runtime reads.
  return json as Process;
}

/**
 * Validates Linux resources on their own (an update's, from containerd's Update request) by config.json's
 * `linux.resources` rules. Throws INVALID_ARGUMENT: "<at>: linux.resources.memory.limit must be an integer,
 * not a string". `path` names the object in messages.
 */
export function parseLinuxResources(json: Json, at: string, path = "linux.resources"): LinuxResources {
  checkDepth(json, at, path);
  const c = new Checker();
  checkResources(c, json, path, true);
  throwIssues(c, at);
  // CAST: checkResources checked every field the runtime reads.
  return json as LinuxResources;
}
