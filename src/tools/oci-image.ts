// A single-layer OCI image-layout tar made from a rootfs directory, for `ctr images import` (no
// registry is reachable here, and there is no image builder). The layer is the directory as tar
// archives it, owned by root; the config says linux/amd64 and runs `sh` unless told otherwise.

import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { Code, KataError } from "../base/errors.js";
import { describeExit, type ProcessRunner } from "../platform/process.js";

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

export interface OciImageOptions {
  readonly rootfs: string;
  readonly out: string;
  /** e.g. docker.io/library/x:latest */
  readonly name: string;
  /** The image config's Entrypoint (none by default). */
  readonly entrypoint?: readonly string[];
  /** The image config's Cmd: ["sh"] by default. */
  readonly cmd?: readonly string[];
}

/** The image config's `config` object (OCI image-spec config.md): what a runtime starts by default. */
export function imageRunConfig(opts: Pick<OciImageOptions, "entrypoint" | "cmd">): Record<string, unknown> {
  return {
    Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    ...(opts.entrypoint === undefined ? {} : { Entrypoint: [...opts.entrypoint] }),
    Cmd: [...(opts.cmd ?? ["sh"])],
  };
}

/** Writes `out` (an OCI layout tar) holding `rootfs` as image `name`. */
export async function writeOciImage(deps: { runner: ProcessRunner }, opts: OciImageOptions): Promise<void> {
  const work = await mkdtemp(path.join(tmpdir(), "kata-ts-oci-"));
  try {
    const blobs = path.join(work, "blobs", "sha256");
    await mkdir(blobs, { recursive: true });
    const put = async (b: Buffer): Promise<{ digest: string; size: number }> => {
      const d = sha256(b);
      await writeFile(path.join(blobs, d), b);
      return { digest: `sha256:${d}`, size: b.length };
    };
    const layerFile = path.join(work, "layer.tar");
    const tar = await deps.runner.run("tar", [
      "-C",
      opts.rootfs,
      "--numeric-owner",
      "--owner=0",
      "--group=0",
      "-cf",
      layerFile,
      ".",
    ]);
    if (tar.code !== 0) throw new KataError(Code.Internal, `tar ${opts.rootfs}: ${describeExit(tar)}: ${tar.stderr}`);
    const layerTar = await readFile(layerFile);
    const layer = await put(gzipSync(layerTar));
    const config = await put(
      Buffer.from(
        JSON.stringify({
          architecture: "amd64",
          os: "linux",
          config: imageRunConfig(opts),
          rootfs: { type: "layers", diff_ids: [`sha256:${sha256(layerTar)}`] },
        }),
      ),
    );
    const manifest = await put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
          layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...layer }],
        }),
      ),
    );
    await writeFile(path.join(work, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    await writeFile(
      path.join(work, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            ...manifest,
            annotations: {
              "io.containerd.image.name": opts.name,
              "org.opencontainers.image.ref.name": opts.name.split(":").pop() ?? "latest",
            },
          },
        ],
      }),
    );
    const r = await deps.runner.run("tar", ["-C", work, "-cf", opts.out, "oci-layout", "index.json", "blobs"]);
    if (r.code !== 0) throw new KataError(Code.Internal, `tar ${opts.out}: ${describeExit(r)}: ${r.stderr}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
