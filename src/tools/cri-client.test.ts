// The CRI client against a real grpc-js server on a unix socket: the request containerd would decode,
// the reply decoded back, and how a status, a deadline and an abort come out as KataErrors.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { create, fromBinary, toBinary, type DescMethodUnary } from "@bufbuild/protobuf";
import { Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { Code, KataError, describeError } from "../base/errors.js";
import { RuntimeService, type RunPodSandboxRequest } from "../protocol/gen/k8s/cri/v1/api_pb.js";
import { CriClient } from "./cri-client.js";

type Handler = (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => void;

function definition(methods: readonly DescMethodUnary[]): Record<string, unknown> {
  return Object.fromEntries(
    methods.map((m) => [
      m.name,
      {
        path: `/${m.parent.typeName}/${m.name}`,
        requestStream: false,
        responseStream: false,
        requestSerialize: (v: never) => Buffer.from(toBinary(m.input, v)),
        requestDeserialize: (b: Buffer) => fromBinary(m.input, b),
        responseSerialize: (v: never) => Buffer.from(toBinary(m.output, v)),
        responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
      },
    ]),
  );
}

describe("CriClient (grpc-js server on a unix socket)", () => {
  let dir = "";
  let server: Server | undefined;
  let client: CriClient | undefined;
  let seen: RunPodSandboxRequest | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kata-ts-cri-client-"));
    server = new Server();
    const impl: Record<string, Handler> = {
      RunPodSandbox: (call, cb) => {
        // CAST: requestDeserialize above decodes RunPodSandbox's input schema.
        seen = call.request as RunPodSandboxRequest;
        cb(null, create(RuntimeService.method.runPodSandbox.output, { podSandboxId: "pod-1" }));
      },
      StopPodSandbox: (_call, cb) => {
        cb({ code: status.NOT_FOUND, details: 'an error occurred when try to find sandbox "nope": not found' });
      },
      ExecSync: () => {
        // Never answers: the client's deadline must end the call.
      },
      StartContainer: () => {
        // Never answers: the caller's signal must end the call.
      },
    };
    server.addService(
      // CAST: grpc-js's ServiceDefinition is a record of exactly these method definitions.
      definition([
        RuntimeService.method.runPodSandbox,
        RuntimeService.method.stopPodSandbox,
        RuntimeService.method.execSync,
        RuntimeService.method.startContainer,
      ]) as never,
      impl,
    );
    const sock = path.join(dir, "cri.sock");
    await new Promise<void>((resolve, reject) => {
      server?.bindAsync(`unix://${sock}`, ServerCredentials.createInsecure(), (err) => {
        if (err === null) resolve();
        else reject(err);
      });
    });
    client = new CriClient(sock, { defaultTimeoutMs: 5000 });
  });

  after(async () => {
    client?.close();
    server?.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });

  it("sends the request as containerd decodes it and returns the sandbox id", async () => {
    assert.ok(client !== undefined);
    const id = await client.runPodSandbox(
      {
        metadata: { name: "p", uid: "u-1", namespace: "default" },
        linux: { cgroupParent: "/kata-ts-test", securityContext: { runAsUser: { value: 1000n } } },
      },
      "kata-ts",
    );
    assert.equal(id, "pod-1");
    assert.equal(seen?.runtimeHandler, "kata-ts");
    assert.equal(seen.config?.metadata?.uid, "u-1");
    assert.equal(seen.config.linux?.cgroupParent, "/kata-ts-test");
    assert.equal(seen.config.linux.securityContext?.runAsUser?.value, 1000n);
  });

  it("turns a gRPC status into a KataError of that code, naming the method, with the server's text", async () => {
    assert.ok(client !== undefined);
    await assert.rejects(client.stopPodSandbox("nope"), (e: unknown) => {
      assert.ok(e instanceof KataError);
      assert.equal(e.code, Code.NotFound);
      assert.equal(e.details["wireCode"], status.NOT_FOUND);
      assert.match(describeError(e), /\/runtime\.v1\.RuntimeService\/StopPodSandbox: .*"nope": not found/);
      return true;
    });
  });

  it("ends a call past its deadline with DEADLINE_EXCEEDED, saying so", async () => {
    assert.ok(client !== undefined);
    const t0 = Date.now();
    await assert.rejects(client.execSync("c1", ["true"], 0, { timeoutMs: 300 }), (e: unknown) => {
      assert.ok(e instanceof KataError);
      assert.equal(e.code, Code.DeadlineExceeded);
      assert.match(e.message, /ExecSync: Deadline exceeded/);
      return true;
    });
    assert.ok(Date.now() - t0 < 4000, "the deadline, not the client's default, ended the call");
  });

  it("ends a call when its signal aborts, with CANCELLED", async () => {
    assert.ok(client !== undefined);
    const ac = new AbortController();
    const p = client.startContainer("c1", { signal: ac.signal });
    setTimeout(() => {
      ac.abort();
    }, 100);
    await assert.rejects(p, (e: unknown) => e instanceof KataError && e.code === Code.Cancelled);
    await assert.rejects(
      client.startContainer("c1", { signal: AbortSignal.abort() }),
      (e: unknown) => e instanceof KataError && e.code === Code.Cancelled,
    );
  });
});
