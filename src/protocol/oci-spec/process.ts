// `process` of the OCI <-> grpc.Spec mapping (conventions: convert.ts). Also used alone, for ExecProcess.

import type * as oci from "../../oci/spec.js";
import type * as grpc from "../gen/oci_pb.js";
import { copy, each, flag, i64, list, num, nz, prune, str, u32, u64, type Init } from "./fields.js";

// ---- OCI -> protobuf ----

export function processInit(p: oci.Process, at: string): Init<typeof grpc.ProcessSchema> {
  const caps = p.capabilities;
  return {
    Terminal: p.terminal ?? false,
    ConsoleSize: p.consoleSize && {
      Height: u32(p.consoleSize.height, `${at}.consoleSize.height`),
      Width: u32(p.consoleSize.width, `${at}.consoleSize.width`),
    },
    User: {
      UID: u32(p.user.uid, `${at}.user.uid`),
      GID: u32(p.user.gid, `${at}.user.gid`),
      AdditionalGids: (p.user.additionalGids ?? []).map((g, i) => u32(g, `${at}.user.additionalGids[${i}]`)),
      Username: p.user.username ?? "",
    },
    Args: copy(p.args),
    Env: copy(p.env),
    Cwd: p.cwd,
    Capabilities: caps && {
      Bounding: copy(caps.bounding),
      Effective: copy(caps.effective),
      Inheritable: copy(caps.inheritable),
      Permitted: copy(caps.permitted),
      Ambient: copy(caps.ambient),
    },
    Rlimits: (p.rlimits ?? []).map((r, i) => ({
      Type: r.type,
      Hard: u64(r.hard, `${at}.rlimits[${i}].hard`),
      Soft: u64(r.soft, `${at}.rlimits[${i}].soft`),
    })),
    NoNewPrivileges: p.noNewPrivileges ?? false,
    ApparmorProfile: p.apparmorProfile ?? "",
    OOMScoreAdj: i64(p.oomScoreAdj ?? 0, `${at}.oomScoreAdj`),
    SelinuxLabel: p.selinuxLabel ?? "",
  };
}

// ---- protobuf -> OCI ----

export function processOut(p: grpc.Process, at: string): oci.Process {
  const { User: user, Capabilities: caps, ConsoleSize: box } = p;
  return prune<oci.Process>({
    terminal: flag(p.Terminal),
    consoleSize: box && { height: box.Height, width: box.Width },
    // Required in OCI: an absent User is root, as an empty one would be.
    user: prune<oci.User>({
      uid: user?.UID ?? 0,
      gid: user?.GID ?? 0,
      additionalGids: list(user?.AdditionalGids ?? []),
      username: str(user?.Username ?? ""),
    }),
    args: list(p.Args),
    env: list(p.Env),
    cwd: p.Cwd,
    capabilities:
      caps &&
      prune<oci.LinuxCapabilities>({
        bounding: list(caps.Bounding),
        effective: list(caps.Effective),
        inheritable: list(caps.Inheritable),
        permitted: list(caps.Permitted),
        ambient: list(caps.Ambient),
      }),
    rlimits: each(p.Rlimits, (r, i) => ({
      type: r.Type,
      hard: num(r.Hard, `${at}.rlimits[${i}].hard`),
      soft: num(r.Soft, `${at}.rlimits[${i}].soft`),
    })),
    noNewPrivileges: flag(p.NoNewPrivileges),
    apparmorProfile: str(p.ApparmorProfile),
    oomScoreAdj: nz(p.OOMScoreAdj, `${at}.oomScoreAdj`),
    selinuxLabel: str(p.SelinuxLabel),
  });
}
