// Validates config.json (runtime-spec 1.x) from untrusted JSON into a Spec, reporting every problem at
// once with its JSON path. Unknown keys are allowed (the spec is extensible); wrong types are not.

import { Code, KataError } from "../base/errors.js";
import type { Spec } from "./spec.js";

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

  bool(v: Json, path: string): void {
    if (v !== undefined && typeof v !== "boolean") this.add(path, `must be a boolean, not ${typeName(v)}`);
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

function checkProcess(c: Checker, p: Json, path: string): void {
  if (!c.object(p, path, false)) return;
  c.bool(p["terminal"], `${path}.terminal`);
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
  c.object(linux["resources"], "linux.resources", false);
}

/** Throws INVALID_ARGUMENT listing every problem in `json`, or returns it as a Spec. */
export function parseSpec(json: Json, file = "config.json"): Spec {
  const c = new Checker();
  if (!isObject(json))
    throw new KataError(Code.InvalidArgument, `${file}: must be a JSON object, not ${typeName(json)}`);
  c.string(json["ociVersion"], "ociVersion", true);
  if (c.object(json["root"], "root", true)) {
    c.string(json["root"]["path"], "root.path", true);
    if (json["root"]["path"] === "") c.add("root.path", "must not be empty");
    c.bool(json["root"]["readonly"], "root.readonly");
  }
  checkProcess(c, json["process"], "process");
  c.string(json["hostname"], "hostname", false);
  checkMounts(c, json["mounts"]);
  checkHooks(c, json["hooks"]);
  c.stringMap(json["annotations"], "annotations");
  checkLinux(c, json["linux"]);
  if (c.issues.length > 0) {
    throw new KataError(Code.InvalidArgument, `${file}: ${c.issues.map((i) => `${i.path} ${i.message}`).join("; ")}`);
  }
  // CAST: every field the runtime reads was checked above.
  return json as unknown as Spec;
}
