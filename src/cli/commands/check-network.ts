// `kata-ts check`, networking part: what the tcfilter model needs from the host. A tap per pod interface
// (the tun device), an ingress qdisc on the veth and the tap, u32 match-all filters and mirred redirects
// (sch_ingress, cls_u32, act_mirred), all set up with `tc` from iproute2. The facts are read once
// (readKernelFacts); the verdicts are a pure function of them, so tests feed fakes.

import { existsSync, readFileSync, statSync } from "node:fs";
import { release } from "node:os";
import { gunzipSync } from "node:zlib";
import { errnoOf } from "../../base/errors.js";
import type { InternetworkingModel } from "../../config/types.js";
import type { CheckResult } from "./check.js";

/** The kernel modules tcfilter uses, with the kconfig symbol that builds each. */
export const tcfilterModules = [
  { name: "sch_ingress", config: "CONFIG_NET_SCH_INGRESS", what: "ingress qdisc" },
  { name: "cls_u32", config: "CONFIG_NET_CLS_U32", what: "u32 classifier" },
  { name: "act_mirred", config: "CONFIG_NET_ACT_MIRRED", what: "mirred redirect action" },
] as const;

export const tunDevice = "/dev/net/tun";

/** What the host says about its kernel; undefined where a source cannot be read. */
export interface KernelFacts {
  readonly release: string;
  /** Module names present under /sys/module (loaded, or built in with parameters). */
  readonly sysModules: ReadonlySet<string>;
  /** /lib/modules/<release>/modules.builtin. */
  readonly modulesBuiltin?: string;
  /** /lib/modules/<release>/modules.dep. */
  readonly modulesDep?: string;
  /** The kernel's configuration: /proc/config.gz, else /boot/config-<release>. */
  readonly kconfig?: string;
  /** The tun device's type and number, or undefined when it does not exist. */
  readonly tun?: { readonly charDevice: boolean; readonly major: number; readonly minor: number };
}

export type ModuleState = "loaded" | "built-in" | "loadable" | "missing" | "unknown";

/** Where a module stands: each source can prove presence; only a kconfig or modules list proves absence. */
export function moduleState(m: { name: string; config: string }, f: KernelFacts): ModuleState {
  const listed = (text: string | undefined): boolean =>
    text !== undefined && new RegExp(`(^|/)${m.name}\\.ko(\\.[gx]z|\\.zst)?:?(\\s|$)`, "m").test(text);
  if (f.sysModules.has(m.name)) return "loaded";
  if (listed(f.modulesBuiltin)) return "built-in";
  const conf = f.kconfig === undefined ? undefined : new RegExp(`^${m.config}=([ym])$`, "m").exec(f.kconfig)?.[1];
  if (conf === "y") return "built-in";
  if (listed(f.modulesDep) || conf === "m") return "loadable";
  const known = f.modulesBuiltin !== undefined || f.modulesDep !== undefined || f.kconfig !== undefined;
  return known ? "missing" : "unknown";
}

/** The networking checks for `model`; `which` finds a binary on PATH. */
export function networkChecks(
  model: InternetworkingModel,
  facts: KernelFacts,
  which: (bin: string) => string | undefined,
): CheckResult[] {
  if (model === "none") {
    return [
      {
        name: "networking",
        ok: true,
        detail: 'internetworking_model = "none": the VM gets no network device (tc and tun are not needed)',
      },
    ];
  }
  if (model === "macvtap") {
    return [
      {
        name: "networking",
        ok: false,
        detail: 'internetworking_model = "macvtap" is not supported by kata-ts',
        fix: 'set internetworking_model = "tcfilter" (or "none") in configuration.toml',
      },
    ];
  }
  const out: CheckResult[] = [];
  const tc = which("tc");
  out.push(
    tc === undefined
      ? {
          name: "tc",
          ok: false,
          detail: "tc not found (tcfilter sets up its filters with it)",
          fix: "apt-get install -y iproute2",
        }
      : { name: "tc", ok: true, detail: tc },
  );
  const tun = facts.tun;
  out.push(
    tun === undefined
      ? {
          name: "tun device",
          ok: false,
          detail: `${tunDevice} does not exist (the VM's NIC is a tap)`,
          fix: `modprobe tun (or: mkdir -p /dev/net && mknod ${tunDevice} c 10 200)`,
        }
      : !tun.charDevice || tun.major !== 10 || tun.minor !== 200
        ? {
            name: "tun device",
            ok: false,
            detail: `${tunDevice} is not the character device 10:200 (${tun.charDevice ? `${tun.major}:${tun.minor}` : "not a character device"})`,
            fix: `rm ${tunDevice} && mknod ${tunDevice} c 10 200`,
          }
        : { name: "tun device", ok: true, detail: `${tunDevice} (10:200)` },
  );
  for (const m of tcfilterModules) {
    const state = moduleState(m, facts);
    const name = `kernel module ${m.name}`;
    switch (state) {
      case "loaded":
      case "built-in":
        out.push({ name, ok: true, detail: `${state === "loaded" ? "loaded" : "built in"} (${m.what})` });
        break;
      case "loadable":
        out.push({ name, ok: true, detail: `loadable (${m.what}; the kernel loads it when tc first uses it)` });
        break;
      case "missing":
        out.push({
          name,
          ok: false,
          detail: `not built into kernel ${facts.release} and not installed as a module (${m.what})`,
          fix: `modprobe ${m.name} (install the kernel's modules package, or build the kernel with ${m.config})`,
        });
        break;
      case "unknown":
        out.push({
          name,
          ok: false,
          warning: true,
          detail: `cannot tell (no /sys/module/${m.name}, modules.builtin, modules.dep or kernel config to read)`,
          fix: `modprobe ${m.name}`,
        });
        break;
    }
  }
  return out;
}

function readOptional(p: string): string | undefined {
  try {
    return readFileSync(p, "utf8");
  } catch {
    // Absent or unreadable: that source says nothing (moduleState weighs what is left).
    return undefined;
  }
}

/** The real host's facts. */
export function readKernelFacts(): KernelFacts {
  const rel = release();
  const sysModules = new Set(tcfilterModules.map((m) => m.name).filter((n) => existsSync(`/sys/module/${n}`)));
  let kconfig: string | undefined;
  try {
    kconfig = gunzipSync(readFileSync("/proc/config.gz")).toString("utf8");
  } catch {
    // No IKCONFIG_PROC: Debian ships the config in /boot instead.
    kconfig = readOptional(`/boot/config-${rel}`);
  }
  let tun: KernelFacts["tun"];
  try {
    const st = statSync(tunDevice);
    // Linux's dev_t: major in bits 8-19 (and 32-43), minor in bits 0-7 and 20-31.
    tun = {
      charDevice: st.isCharacterDevice(),
      major: (st.rdev >> 8) & 0xfff,
      minor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00),
    };
  } catch (e) {
    if (errnoOf(e) !== "ENOENT") throw e;
    tun = undefined;
  }
  const builtin = readOptional(`/lib/modules/${rel}/modules.builtin`);
  const dep = readOptional(`/lib/modules/${rel}/modules.dep`);
  return {
    release: rel,
    sysModules,
    ...(builtin === undefined ? {} : { modulesBuiltin: builtin }),
    ...(dep === undefined ? {} : { modulesDep: dep }),
    ...(kconfig === undefined ? {} : { kconfig }),
    ...(tun === undefined ? {} : { tun }),
  };
}
