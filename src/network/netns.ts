// The sandbox's network namespace: which one the OCI spec asks for (planNetns, pure), then creating,
// checking, entering and removing it (NetnsPort; NetnsManager does it through iproute2 and nsenter).
// Kata: src/runtime/pkg/katautils/network.go (SetupNetworkNamespace, hostNetworkingRequested).

import { createHash } from "node:crypto";
import { lstat, stat } from "node:fs/promises";
import type { Stats } from "node:fs";
import path from "node:path";
import { abortError } from "../base/async.js";
import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, errnoOf, withSuppressed } from "../base/errors.js";
import type { Spec } from "../oci/spec.js";
import { describeExit, type ProcessRunner, type RunOptions, type RunResult } from "../platform/process.js";

export type NetnsPlan =
  { readonly kind: "create"; readonly name: string } | { readonly kind: "join"; readonly path: string };

/** Where `ip netns add NAME` bind-mounts the namespace; iproute2 compiles it in (NETNS_RUN_DIR). */
export const netnsRunDir = "/var/run/netns";

/** Absolute, because hooks run nsenter with the hook's own env, whose PATH (if any) we do not control. */
export const defaultNsenterPath = "/usr/bin/nsenter";

/** The network namespaces of the host (PID 1) and of the runtime itself: a sandbox must not share them. */
const hostNetnsPath = "/proc/1/ns/net";
const ownNetnsPath = "/proc/self/ns/net";

const namePrefix = "kata-ts-";
/** iproute2 refuses names longer than NAME_MAX, names containing "/", and "." and "..". */
const maxNameLength = 255;
const nameChars = /^[A-Za-z0-9_.-]+$/;
const hostNetworking = "host networking requested, not supported";

/**
 * `kata-ts-<sandboxId>`, or a readable prefix plus a hash when the id has odd characters or is too long.
 * Network namespace names are host-wide while ids are unique per --root only: `scope` (a short tag of a
 * non-default root) goes in the name, `kata-ts-<scope>-<sandboxId>`, so two roots never collide.
 */
export function netnsName(sandboxId: string, scope = ""): string {
  const prefix = scope === "" ? namePrefix : `${namePrefix}${scope}-`;
  const plain = prefix + sandboxId;
  if (nameChars.test(sandboxId) && plain.length <= maxNameLength) return plain;
  const hash = createHash("sha256").update(sandboxId).digest("hex").slice(0, 16);
  const readable = sandboxId.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 32);
  return `${prefix}${readable === "" ? "" : `${readable}-`}${hash}`;
}

/**
 * The network namespace the sandbox gets, from `linux.namespaces`: an entry with a path is joined, one
 * without is created. No entry means the container shares the host's network, which a VM cannot do.
 * Throws FAILED_PRECONDITION (host networking) or INVALID_ARGUMENT (duplicate entry, relative path).
 */
export function planNetns(spec: Spec, sandboxId: string, scope = ""): NetnsPlan {
  const entries = (spec.linux?.namespaces ?? []).filter((ns) => ns.type === "network");
  const [entry] = entries;
  if (entry === undefined) {
    throw new KataError(Code.FailedPrecondition, `${hostNetworking} (linux.namespaces has no network entry)`);
  }
  if (entries.length > 1) {
    throw new KataError(Code.InvalidArgument, `linux.namespaces: network is listed ${entries.length} times`);
  }
  if (entry.path === undefined || entry.path === "") return { kind: "create", name: netnsName(sandboxId, scope) };
  if (!path.isAbsolute(entry.path)) {
    throw new KataError(Code.InvalidArgument, `linux.namespaces: network namespace path ${entry.path} is not absolute`);
  }
  return { kind: "join", path: entry.path };
}

/** The command that runs `file args` inside the network namespace at `netnsPath`. */
export function nsenterCommand(
  netnsPath: string,
  file: string,
  args: readonly string[],
  nsenterPath: string = defaultNsenterPath,
): { file: string; args: string[] } {
  return { file: nsenterPath, args: [`--net=${netnsPath}`, "--", file, ...args] };
}

export function netnsPathOf(name: string): string {
  return path.join(netnsRunDir, name);
}

function checkName(name: string): void {
  if (!nameChars.test(name) || name === "." || name === ".." || name.length > maxNameLength) {
    throw new KataError(Code.InvalidArgument, `network namespace name ${JSON.stringify(name)} is not valid`);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return false;
    throw new KataError(Code.Internal, `lstat ${p}`, { cause: e });
  }
}

const deniedErrnos = ["EACCES", "EPERM"];

async function statNs(p: string): Promise<Stats> {
  try {
    return await stat(p);
  } catch (e) {
    const errno = errnoOf(e);
    if (errno === "ENOENT") throw new KataError(Code.NotFound, `network namespace ${p} does not exist`);
    if (deniedErrnos.includes(errno ?? "")) {
      throw new KataError(Code.FailedPrecondition, `network namespace ${p} is not accessible`, { cause: e });
    }
    throw new KataError(Code.Internal, `stat ${p}`, { cause: e });
  }
}

/** The namespace files whose identity means "host networking", with their stat; PID 1's when readable. */
async function hostNetns(): Promise<{ path: string; st: Stats }[]> {
  const found = [{ path: ownNetnsPath, st: await statNs(ownNetnsPath) }];
  try {
    found.push({ path: hostNetnsPath, st: await stat(hostNetnsPath) });
  } catch (e) {
    // Some hosts deny even root access to /proc/1/ns (seen on the microVM these tests were written on).
    // The runtime's own namespace, the only one Kata compares against, still catches host networking.
    if (!deniedErrnos.includes(errnoOf(e) ?? "")) {
      throw new KataError(Code.Internal, `stat ${hostNetnsPath}`, { cause: e });
    }
  }
  return found;
}

/** The inode number of a namespace file (bind mount or /proc/PID/ns/net): the namespace's identity. */
export async function netnsInode(p: string): Promise<number> {
  return (await statNs(p)).ino;
}

export interface NetnsDeps {
  readonly runner: ProcessRunner;
  /** nsenter binary (default /usr/bin/nsenter). */
  readonly nsenterPath?: string;
  /** Where `ip netns` keeps namespace files (default netnsRunDir, compiled into iproute2): tests only. */
  readonly runDir?: string;
}

/** What the sandbox layer asks of network namespaces; NetnsManager is the real one (a class, hence nominal). */
export interface NetnsPort {
  /** Creates namespace `name`; returns its path. ALREADY_EXISTS when taken, INVALID_ARGUMENT for a bad name. */
  create(name: string, signal?: AbortSignal): Promise<string>;
  /** Removes namespace `name`; one already gone is not an error. */
  remove(name: string): Promise<void>;
  /** Throws unless a sandbox may join the namespace at `nsPath` (FAILED_PRECONDITION for the host's). */
  checkJoinable(nsPath: string, signal?: AbortSignal): Promise<void>;
  /** Runs `file args` inside the namespace at `nsPath`. */
  run(nsPath: string, file: string, args: readonly string[], opts?: Omit<RunOptions, "argv0">): Promise<RunResult>;
}

/** Creates, checks, enters and removes network namespaces. Needs root (CAP_SYS_ADMIN). */
export class NetnsManager implements NetnsPort {
  readonly #runner: ProcessRunner;
  readonly #nsenter: string;
  readonly #runDir: string;

  constructor(deps: NetnsDeps) {
    this.#runner = deps.runner;
    this.#nsenter = deps.nsenterPath ?? defaultNsenterPath;
    this.#runDir = deps.runDir ?? netnsRunDir;
  }

  #pathOf(name: string): string {
    return path.join(this.#runDir, name);
  }

  /**
   * `ip netns add NAME`; returns /var/run/netns/NAME. ALREADY_EXISTS when the name is taken,
   * INVALID_ARGUMENT for a bad name. On abort, a half-made namespace is removed again.
   */
  async create(name: string, signal?: AbortSignal): Promise<string> {
    checkName(name);
    const nsPath = this.#pathOf(name);
    if (await exists(nsPath)) {
      throw new KataError(Code.AlreadyExists, `network namespace ${name} already exists`, { details: { nsPath } });
    }
    const r = await this.#runner.run("ip", ["netns", "add", name], signal === undefined ? {} : { signal });
    if (signal?.aborted === true) {
      const undo = new CleanupStack();
      undo.defer(`remove network namespace ${name}`, () => this.remove(name));
      return undo.unwind(abortError(signal, `create network namespace ${name}`));
    }
    if (r.code !== 0) {
      const failed = new KataError(Code.Internal, `ip netns add ${name}: ${describeExit(r)}: ${r.stderr.trim()}`, {
        details: { nsPath },
      });
      // A racing creator can win between our check and iproute2's open(O_CREAT|O_EXCL), whose EEXIST
      // iproute2 reports only as text. But iproute2 removes a file it created when a later step fails:
      // a file there now, absent before the call, is someone else's namespace.
      let taken: boolean;
      try {
        taken = await exists(nsPath);
      } catch (e) {
        throw withSuppressed(failed, [e]);
      }
      if (!taken) throw failed;
      throw new KataError(Code.AlreadyExists, `network namespace ${name} already exists`, {
        cause: failed,
        details: { nsPath },
      });
    }
    return nsPath;
  }

  /** `ip netns delete NAME`; a namespace that is already gone is not an error. */
  async remove(name: string): Promise<void> {
    checkName(name);
    if (!(await exists(this.#pathOf(name)))) return;
    const r = await this.#runner.run("ip", ["netns", "delete", name]);
    if (r.code !== 0 && (await exists(this.#pathOf(name)))) {
      throw new KataError(Code.Internal, `ip netns delete ${name}: ${describeExit(r)}: ${r.stderr.trim()}`);
    }
  }

  /**
   * Checks that `nsPath` (from the OCI spec) is a network namespace a sandbox may join: NOT_FOUND when it
   * does not exist, INVALID_ARGUMENT when it is not a network namespace, FAILED_PRECONDITION when it is
   * the host's (PID 1's) or the runtime's own network namespace, or when we may not open it.
   */
  async checkJoinable(nsPath: string, signal?: AbortSignal): Promise<void> {
    if (!path.isAbsolute(nsPath)) {
      throw new KataError(Code.InvalidArgument, `network namespace path ${nsPath} is not absolute`);
    }
    const st = await statNs(nsPath);
    const hosts = await hostNetns();
    // Every namespace file (a /proc/PID/ns/* link or a bind mount of one) is an inode of the one nsfs
    // superblock, so its device tells namespace files from everything else.
    if (hosts.every((h) => h.st.dev !== st.dev)) {
      throw new KataError(Code.InvalidArgument, `${nsPath} is not a namespace file`);
    }
    for (const host of hosts) {
      if (host.st.dev === st.dev && host.st.ino === st.ino) {
        throw new KataError(
          Code.FailedPrecondition,
          `${hostNetworking} (${nsPath} is the same namespace as ${host.path})`,
        );
      }
    }
    // Namespace files of all types share that device; only setns(2) with CLONE_NEWNET, which the kernel
    // refuses with EINVAL for another type, tells a network namespace apart.
    const r = await this.run(nsPath, "true", [], signal === undefined ? {} : { signal });
    if (signal?.aborted === true) throw abortError(signal, `check network namespace ${nsPath}`);
    if (r.code !== 0) {
      throw new KataError(Code.InvalidArgument, `${nsPath} is not a network namespace: ${r.stderr.trim()}`);
    }
  }

  /**
   * Runs `file args` inside the network namespace at `nsPath` (nsenter --net). The program's argv[0] is
   * `file`: nsenter execs it by that name, so there is no argv0 option.
   */
  run(nsPath: string, file: string, args: readonly string[], opts: Omit<RunOptions, "argv0"> = {}): Promise<RunResult> {
    const cmd = nsenterCommand(nsPath, file, args, this.#nsenter);
    return this.#runner.run(cmd.file, cmd.args, opts);
  }
}
