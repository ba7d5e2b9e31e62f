// `kata-ts --version` / `kata-ts version` (runc's layout: one "name version" line, then key: value
// lines) and `kata-ts features` (the runtime-spec features document that runc, crun and youki print,
// so callers such as containerd and podman can ask what is supported instead of guessing).

import { readFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { messageOf } from "../../base/errors.js";
import { manifestFileName } from "../../image/manifest.js";
import { ociVersion } from "../../oci/spec.js";
import { installRoot } from "../paths.js";

export interface VersionInfo {
  readonly version: string;
  /** The guest image's kernel release, or why there is none. */
  readonly guestKernel: string;
  readonly node: string;
}

/** This build's version, from its package.json (the agent in its guest image is built from the same tree). */
export function buildVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(installRoot, "package.json"), "utf8")) as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}

export function versionText(v: VersionInfo): string {
  return [
    `kata-ts version ${v.version}`,
    `spec: ${ociVersion}`,
    `agent: ${v.version} (built with the runtime, in the guest image)`,
    `guest kernel: ${v.guestKernel}`,
    `node: ${v.node}`,
    "",
  ].join("\n");
}

/**
 * What a container gets here: hooks run on the host (createContainer and startContainer would have to
 * run in the container's namespaces, which are in the VM: they are not run); namespaces are the guest's
 * (network is the VM's, shared by the pod); crun in the guest applies seccomp; AppArmor and SELinux
 * labels are host labels and are dropped. Fields left out mean "unknown", as the features spec says.
 */
export function featuresDocument(version: string): unknown {
  return {
    ociVersionMin: "1.0.0",
    ociVersionMax: ociVersion,
    hooks: ["prestart", "createRuntime", "poststart", "poststop"],
    linux: {
      namespaces: ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
      seccomp: { enabled: true },
      apparmor: { enabled: false },
      selinux: { enabled: false },
    },
    annotations: {
      "io.github.kata-ts.version": version,
      "io.github.kata-ts.isolation": "vm",
    },
  };
}

/** The kernel release the guest image's manifest records; read synchronously (see --version). */
function guestKernel(imageDir: string): string {
  const missing = `no guest image in ${imageDir} (kata-ts image build)`;
  try {
    const m = JSON.parse(readFileSync(path.join(imageDir, manifestFileName), "utf8")) as { kernelRelease?: unknown };
    return typeof m.kernelRelease === "string" ? m.kernelRelease : missing;
  } catch (e) {
    // An unreadable image is reported as none; `kata-ts check` says why.
    return `${missing}: ${messageOf(e)}`;
  }
}

export function registerVersion(program: Command, imageDir: () => string): void {
  const print = (): void => {
    process.stdout.write(
      versionText({ version: buildVersion(), guestKernel: guestKernel(imageDir()), node: process.version }),
    );
  };
  // As commander's own .version(): printed and exited from the option's handler, before any command
  // (none is needed) would be looked for.
  program.option("-v, --version", "print the version (as the version command)");
  program.on("option:version", () => {
    print();
    process.exit(0);
  });
  program.command("version").description("print the version of kata-ts, its agent, the guest kernel").action(print);
  program
    .command("features")
    .description("print the runtime-spec features document (JSON): what kata-ts supports")
    .action(() => {
      process.stdout.write(JSON.stringify(featuresDocument(buildVersion()), null, 2) + "\n");
    });
}
