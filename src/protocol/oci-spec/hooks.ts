// `hooks` of the OCI <-> grpc.Spec mapping (conventions: convert.ts).

import type * as oci from "../../oci/spec.js";
import type * as grpc from "../gen/oci_pb.js";
import { copy, each, i64, list, nz, prune, type Init } from "./fields.js";

// ---- OCI -> protobuf ----

export function hooksInit(h: oci.Hooks): Init<typeof grpc.HooksSchema> {
  const hookList = (hooks: oci.Hook[] | undefined, at: string): Init<typeof grpc.HookSchema>[] =>
    (hooks ?? []).map((k, i) => ({
      Path: k.path,
      Args: copy(k.args),
      Env: copy(k.env),
      Timeout: i64(k.timeout ?? 0, `${at}[${i}].timeout`),
    }));
  return {
    Prestart: hookList(h.prestart, "hooks.prestart"),
    CreateRuntime: hookList(h.createRuntime, "hooks.createRuntime"),
    CreateContainer: hookList(h.createContainer, "hooks.createContainer"),
    StartContainer: hookList(h.startContainer, "hooks.startContainer"),
    Poststart: hookList(h.poststart, "hooks.poststart"),
    Poststop: hookList(h.poststop, "hooks.poststop"),
  };
}

// ---- protobuf -> OCI ----

export function hooksOut(h: grpc.Hooks): oci.Hooks {
  return prune<oci.Hooks>({
    prestart: hookListOut(h.Prestart, "hooks.prestart"),
    createRuntime: hookListOut(h.CreateRuntime, "hooks.createRuntime"),
    createContainer: hookListOut(h.CreateContainer, "hooks.createContainer"),
    startContainer: hookListOut(h.StartContainer, "hooks.startContainer"),
    poststart: hookListOut(h.Poststart, "hooks.poststart"),
    poststop: hookListOut(h.Poststop, "hooks.poststop"),
  });
}

function hookListOut(hooks: grpc.Hook[], at: string): oci.Hook[] | undefined {
  return each(hooks, (h, i) =>
    prune<oci.Hook>({
      path: h.Path,
      args: list(h.Args),
      env: list(h.Env),
      timeout: nz(h.Timeout, `${at}[${i}].timeout`),
    }),
  );
}
