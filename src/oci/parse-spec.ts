// Validates config.json (runtime-spec 1.x) from untrusted JSON into a Spec, reporting every problem at
// once with its JSON path. Unknown keys are allowed (the spec is extensible); wrong types are not, for
// every field the runtime reads. `linux` is checked in parse-linux.ts.

import { Code, KataError } from "../base/errors.js";
import { Checker, isObject, typeName, type Issue, type Json } from "./json-checker.js";
import { maxJsonDepth, tooDeepAt } from "./json-depth.js";
import { checkIdMappings, checkLinux, checkResources } from "./parse-linux.js";
import type { LinuxResources, Process, Spec } from "./spec.js";

export type { Issue } from "./json-checker.js";

function checkProcess(c: Checker, p: Json, path: string, required = false): void {
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
    c.string(p["user"]["username"], `${path}.user.username`, false);
  }
  c.stringArray(p["args"], `${path}.args`);
  c.stringArray(p["env"], `${path}.env`);
  c.string(p["cwd"], `${path}.cwd`, true);
  if (typeof p["cwd"] === "string" && !p["cwd"].startsWith("/")) c.add(`${path}.cwd`, "must be an absolute path");
  c.strings(p, path, ["commandLine", "apparmorProfile", "selinuxLabel"]);
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
    checkIdMappings(c, m["uidMappings"], `${path}.uidMappings`);
    checkIdMappings(c, m["gidMappings"], `${path}.gidMappings`);
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

/** Every problem of `json` as a config.json, each with its JSON path ("" for the document itself). */
export function specIssues(json: Json): Issue[] {
  const c = new Checker();
  if (!isObject(json)) {
    c.add("", `must be a JSON object, not ${typeName(json)}`);
    return c.issues;
  }
  c.string(json["ociVersion"], "ociVersion", true);
  if (c.object(json["root"], "root", true)) {
    c.string(json["root"]["path"], "root.path", true);
    if (json["root"]["path"] === "") c.add("root.path", "must not be empty");
    c.bool(json["root"]["readonly"], "root.readonly");
  }
  checkProcess(c, json["process"], "process");
  c.string(json["hostname"], "hostname", false);
  c.string(json["domainname"], "domainname", false);
  checkMounts(c, json["mounts"]);
  checkHooks(c, json["hooks"]);
  c.stringMap(json["annotations"], "annotations");
  checkLinux(c, json["linux"]);
  return c.issues;
}

function refuse(what: string, issues: readonly Issue[]): KataError {
  const problems = issues.map((i) => (i.path === "" ? i.message : `${i.path} ${i.message}`));
  return new KataError(Code.InvalidArgument, `${what}: ${problems.join("; ")}`, {
    details: { problems: issues.length },
  });
}

/** Throws INVALID_ARGUMENT listing every problem in `json`, or returns it as a Spec. */
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

export function parseSpec(json: Json, file = "config.json"): Spec {
  checkDepth(json, file, "");
  const issues = specIssues(json);
  if (issues.length > 0) throw refuse(file, issues);
  // CAST: every field the runtime reads was checked by specIssues.
  return json as Spec;
}

/**
 * An exec's process (containerd's ExecProcess spec, `kata-ts exec --process FILE`), checked as
 * config.json's `process`; `what` starts the INVALID_ARGUMENT message, the paths start at `process`.
 */
export function parseProcess(json: Json, what: string): Process {
  checkDepth(json, what, "process");
  const c = new Checker();
  checkProcess(c, json, "process", true);
  if (c.issues.length > 0) throw refuse(what, c.issues);
  // CAST: checkProcess checked every field the runtime reads.
  return json as Process;
}

/** New limits for a running container (containerd's UpdateTask), checked as config.json's `linux.resources`. */
export function parseLinuxResources(json: Json, what: string): LinuxResources {
  checkDepth(json, what, "resources");
  const c = new Checker();
  checkResources(c, json, "resources", true);
  if (c.issues.length > 0) throw refuse(what, c.issues);
  // CAST: checkResources checked every field the runtime reads.
  return json as LinuxResources;
}
