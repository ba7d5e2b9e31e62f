import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildVersion, featuresDocument, versionText } from "./version.js";

describe("version and features", () => {
  it("prints runc's layout: a 'name version X' line, then the spec, agent, guest kernel and node", () => {
    const text = versionText({ version: "1.2.3", guestKernel: "6.1.0-57-amd64", node: "v20.1.0" });

    assert.match(
      text,
      /^kata-ts version 1\.2\.3\nspec: 1\.\d+\.\d+\nagent: 1\.2\.3 .*\nguest kernel: 6\.1\.0-57-amd64\nnode: v20\.1\.0\n$/,
    );
  });

  it("reads the version from this build's package.json", () => {
    assert.match(buildVersion(), /^\d+\.\d+\.\d+/);
  });

  it("lists only the hooks kata-ts runs, and drops host security labels", () => {
    const f = featuresDocument("1.2.3") as {
      ociVersionMax: string;
      hooks: string[];
      linux: { apparmor: { enabled: boolean }; selinux: { enabled: boolean } };
      annotations: Record<string, string>;
    };

    assert.deepEqual(f.hooks, ["prestart", "createRuntime", "poststart", "poststop"]);
    assert.equal(f.linux.apparmor.enabled, false);
    assert.equal(f.linux.selinux.enabled, false);
    assert.equal(f.annotations["io.github.kata-ts.version"], "1.2.3");
  });
});
