// deploy/*.yaml parse as YAML and agree with `kata-ts install` and with each other: the RuntimeClass's
// handler is install's runtime handler, its nodeSelector is the label the DaemonSet's script sets, the
// DaemonSet runs as the RBAC's ServiceAccount with what kata-deploy needs. No YAML dependency is added
// for this: prettier (a devDependency already) parses YAML with the `yaml` library, and its syntax tree
// is turned into plain values here (mappings, sequences, scalars: what Kubernetes manifests use).

import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import * as prettierYaml from "prettier/plugins/yaml";
import { installRoot } from "../runtime-context.js";
import { nodeLabel, runtimeHandler } from "./install-plan.js";

const deployDir = path.join(installRoot, "deploy");

interface YamlNode {
  readonly type: string;
  readonly value?: string | null;
  readonly children: readonly (YamlNode | null)[];
}

function plain(text: string): unknown {
  if (/^(?:true|false)$/.test(text)) return text === "true";
  if (/^(?:null|~|)$/.test(text)) return null;
  if (/^-?\d+$/.test(text)) return Number(text);
  return text;
}

function toValue(node: YamlNode | null | undefined): unknown {
  if (node === null || node === undefined) return null;
  const kids = node.children;
  switch (node.type) {
    case "mapping":
    case "flowMapping": {
      const out: Record<string, unknown> = {};
      for (const item of kids) {
        const [key, value] = item?.children ?? [];
        out[String(toValue(key?.children[0]))] = toValue(value?.children[0]);
      }
      return out;
    }
    case "sequence":
    case "flowSequence":
      return kids.map((item) => toValue(item?.type === "flowMappingItem" ? item : item?.children[0]));
    case "plain":
      return plain(node.value ?? "");
    case "quoteDouble":
    case "quoteSingle":
    case "blockLiteral":
    case "blockFolded":
      return node.value ?? "";
    default:
      throw new Error(`yaml node ${node.type} not handled by this test`);
  }
}

/** The documents of a YAML file; a syntax error throws (with its line and column). */
function parseYaml(text: string): unknown[] {
  // CAST: the parser is typed loosely (`any` AST); YamlNode is the part of its shape this test reads.
  const root = (prettierYaml.parsers.yaml.parse as (t: string, o: object) => YamlNode)(text, {});
  return root.children
    .map((doc) => doc?.children[1]?.children[0])
    .filter((body) => body !== undefined && body !== null)
    .map(toValue);
}

type Obj = Record<string, unknown>;

function obj(v: unknown, what: string): Obj {
  assert.ok(typeof v === "object" && v !== null && !Array.isArray(v), `${what} is a mapping`);
  // CAST: checked just above.
  return v as Obj;
}

function at(v: unknown, keys: string): unknown {
  return keys.split(".").reduce<unknown>((cur, k) => obj(cur, k)[k], v);
}

function manifests(): Obj[] {
  const files = readdirSync(deployDir).filter((f) => f.endsWith(".yaml"));
  assert.deepEqual(files.sort(), ["kata-ts-deploy.yaml", "kata-ts-rbac.yaml", "runtimeclass.yaml"]);
  return files.flatMap((f) => parseYaml(readFileSync(path.join(deployDir, f), "utf8")).map((d) => obj(d, f)));
}

describe("deploy/*.yaml", () => {
  it("the parser turns YAML into values, and rejects broken YAML", () => {
    assert.deepEqual(parseYaml('a: 1\nb: [x, "y"]\nc: |\n  l1\n  l2\nd:\n  - {k: true}\n---\ne: ~\n'), [
      { a: 1, b: ["x", "y"], c: "l1\nl2\n", d: [{ k: true }] },
      { e: null },
    ]);
    assert.throws(() => parseYaml("a: [1\nb: 2\n"));
  });

  it("every document has apiVersion, kind and metadata.name", () => {
    const docs = manifests();
    assert.deepEqual(docs.map((d) => `${String(d["kind"])}/${String(at(d, "metadata.name"))}`).sort(), [
      "ClusterRole/kata-ts-deploy-role",
      "ClusterRoleBinding/kata-ts-deploy-rb",
      "DaemonSet/kata-ts-deploy",
      "RuntimeClass/kata-ts",
      "ServiceAccount/kata-ts-deploy-sa",
    ]);
    const apiVersion: Record<string, string> = {
      ServiceAccount: "v1",
      ClusterRole: "rbac.authorization.k8s.io/v1",
      ClusterRoleBinding: "rbac.authorization.k8s.io/v1",
      DaemonSet: "apps/v1",
      RuntimeClass: "node.k8s.io/v1",
    };
    for (const d of docs) assert.equal(d["apiVersion"], apiVersion[String(d["kind"])], String(d["kind"]));
  });

  it("the RuntimeClass uses install's handler, schedules on the DaemonSet's label, and has an overhead", () => {
    const rc = manifests().find((d) => d["kind"] === "RuntimeClass");
    assert.equal(rc?.["handler"], runtimeHandler);
    assert.deepEqual(at(rc, "scheduling.nodeSelector"), { [nodeLabel]: "true" });
    assert.match(String(at(rc, "overhead.podFixed.memory")), /^\d+Mi$/);
    assert.equal(at(rc, "overhead.podFixed.cpu"), "250m");
    const script = readFileSync(path.join(deployDir, "kata-ts-deploy.sh"), "utf8");
    assert.ok(script.includes(`label=${nodeLabel}\n`), "the script labels nodes with install's label");
    assert.match(script, /kubectl label node "\$NODE_NAME" "\$label=true" --overwrite/);
    assert.ok(script.includes("bin_dir=${KATA_TS_DEPLOY_BIN_DIR:-/usr/local/bin}\n"));
    assert.ok(script.includes("host_pid=${KATA_TS_DEPLOY_HOST_PID:-1}\n"), "nsenter into the host's pid 1");
    assert.match(script, /install --write --bin-dir "\$bin_dir"/);
    assert.match(script, /install --uninstall/);
  });

  it("the DaemonSet is privileged with hostPID, runs install and cleanup, as the RBAC's ServiceAccount", () => {
    const docs = manifests();
    const ds = docs.find((d) => d["kind"] === "DaemonSet");
    const pod = at(ds, "spec.template.spec");
    const sa = docs.find((d) => d["kind"] === "ServiceAccount");
    assert.equal(at(pod, "serviceAccountName"), at(sa, "metadata.name"));
    assert.equal(at(ds, "metadata.namespace"), at(sa, "metadata.namespace"));
    const binding = docs.find((d) => d["kind"] === "ClusterRoleBinding");
    assert.deepEqual(at(binding, "subjects"), [
      { kind: "ServiceAccount", name: at(sa, "metadata.name"), namespace: at(sa, "metadata.namespace") },
    ]);
    const role = docs.find((d) => d["kind"] === "ClusterRole");
    assert.deepEqual(at(role, "rules"), [{ apiGroups: [""], resources: ["nodes"], verbs: ["get", "patch"] }]);
    assert.equal(at(pod, "hostPID"), true);
    const containers = at(pod, "containers");
    assert.ok(Array.isArray(containers) && containers.length === 1);
    const c = obj(containers[0], "container");
    assert.equal(at(c, "securityContext.privileged"), true);
    assert.deepEqual(c["command"], ["/opt/kata-ts-artifacts/deploy/kata-ts-deploy.sh", "install"]);
    assert.deepEqual(at(c, "lifecycle.preStop.exec.command"), [
      "/opt/kata-ts-artifacts/deploy/kata-ts-deploy.sh",
      "cleanup",
    ]);
    assert.deepEqual(c["env"], [
      { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
      { name: "CONTAINERD_CONFIG", value: "/etc/containerd/config.toml" },
    ]);
    const volumes = at(pod, "volumes");
    assert.ok(Array.isArray(volumes));
    assert.deepEqual(
      volumes.map((v) => at(v, "hostPath.path")),
      ["/opt/kata-ts", "/etc/containerd", "/usr/local/bin"],
    );
    const mounts = c["volumeMounts"];
    assert.ok(Array.isArray(mounts));
    assert.deepEqual(
      mounts.map((m) => obj(m, "mount")["mountPath"]),
      ["/opt/kata-ts", "/etc/containerd", "/host/usr/local/bin"],
    );
  });
});
