import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "smol-toml";
import { mergeLayers, type Layer } from "./merge.js";

function layer(file: string, toml: string): Layer {
  return { file, doc: parse(toml) };
}

describe("mergeLayers", () => {
  it("merges tables key by key, the later layer winning", () => {
    const m = mergeLayers([
      layer("main", "[hypervisor.qemu]\ndefault_memory = 2048\ndefault_vcpus = 1\n[runtime]\nenable_debug = false"),
      layer("10", "[hypervisor.qemu]\ndefault_memory = 512"),
      layer("20", "[runtime]\nenable_debug = true"),
    ]);

    assert.deepEqual(JSON.parse(JSON.stringify(m.doc)), {
      hypervisor: { qemu: { default_memory: 512, default_vcpus: 1 } },
      runtime: { enable_debug: true },
    });
  });

  it("replaces arrays whole instead of appending", () => {
    const m = mergeLayers([
      layer("main", '[hypervisor.qemu]\nenable_annotations = ["a", "b"]'),
      layer("10", '[hypervisor.qemu]\nenable_annotations = ["c"]'),
    ]);

    assert.deepEqual(JSON.parse(JSON.stringify(m.doc)), { hypervisor: { qemu: { enable_annotations: ["c"] } } });
  });

  it("remembers which file set each key", () => {
    const m = mergeLayers([
      layer("main", "[hypervisor.qemu]\ndefault_memory = 2048\ndefault_vcpus = 1"),
      layer("10", "[hypervisor.qemu]\ndefault_memory = 512\n[factory]\nenable_template = true"),
    ]);

    assert.equal(m.originOf(["hypervisor", "qemu", "default_memory"]), "10");
    assert.equal(m.originOf(["hypervisor", "qemu", "default_vcpus"]), "main");
    assert.equal(m.originOf(["factory", "enable_template"]), "10");
    assert.equal(m.originOf(["runtime", "enable_debug"]), "main");
  });

  it("lets a table replace a scalar and forgets the replaced value's origins", () => {
    const m = mergeLayers([layer("main", "runtime = 1"), layer("10", "[runtime]\nenable_debug = true")]);

    assert.deepEqual(JSON.parse(JSON.stringify(m.doc)), { runtime: { enable_debug: true } });
    assert.equal(m.originOf(["runtime", "enable_debug"]), "10");
  });

  it("does not modify the parsed layers", () => {
    const main = layer("main", "[runtime]\nenable_debug = false");

    mergeLayers([main, layer("10", "[runtime]\nenable_debug = true")]);

    assert.deepEqual(JSON.parse(JSON.stringify(main.doc)), { runtime: { enable_debug: false } });
  });
});
