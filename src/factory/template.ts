// The VM template on the host (Kata's factory/template): `factory init` boots it and saves it, a sandbox
// fetches it and starts a clone from it, `factory destroy` removes it. Only files are left between
// commands: nothing runs once init has saved the template.

import { Buffer } from "node:buffer";
import { mkdir, open, readdir, rename, rmdir, stat, writeFile } from "node:fs/promises";
import { abortError, delay, deadline } from "../base/async.js";
import { CleanupStack } from "../base/cleanup.js";
import { Code, KataError, errnoOf, ignoreErrno, wrap } from "../base/errors.js";
import type { Logger } from "../base/log.js";
import { errField } from "../base/log.js";
import { AgentClient, type AgentApi } from "../agent-client/agent-client.js";
import type { Hypervisor, Vm, VmConfig, VmSpec } from "../hypervisor/hypervisor.js";
import type { Mounter } from "../platform/mount.js";
import type { NetnsPort } from "../network/netns.js";
import { tapOps } from "../network/plan.js";
import { describeExit } from "../platform/process.js";
import { parseMountInfo } from "../platform/mountinfo.js";
import {
  checkTemplatePath,
  cloneNics,
  maxRecordBytes,
  notOurTmpfs,
  parseTemplateRecord,
  templateFiles,
  templateMismatches,
  templateMountSource,
  templateNetnsName,
  recordFor,
  templateNic,
  templateTmpfsMiB,
  type FileIdentity,
  type TemplateFiles,
  type TemplateRecord,
  type TemplateRequest,
} from "./template-plan.js";

export interface TemplateDeps {
  readonly hypervisor: Hypervisor;
  /** The accelerator the hypervisor would use now ("kvm", "tcg"): a template is one accelerator's. */
  readonly accel: () => string;
  readonly mounter: Mounter;
  readonly readMountInfo: () => Promise<string>;
  readonly logger: Logger;
  /** Where `factory init` opens the template NIC's tap; without it the template has no NIC. */
  readonly netns?: NetnsPort;
}

/** The template VM as `factory init` boots it. */
export interface TemplateSpec extends VmSpec {
  readonly binaryPath: string;
  readonly bootTimeoutMs: number;
}

/**
 * Run in the template before it is saved (docs/factory.md#warm-up-tcg), given the template's 9p export
 * directory and its agent; says what it ran. It must leave the share unmounted in the guest.
 */
export type TemplateWarmup = (shareDir: string, agent: AgentApi, signal: AbortSignal) => Promise<string>;

/**
 * After the host closes its agent connection, how long the guest may take to see it and go back to
 * waiting for the next host (the clone's): its session must not be saved half-ended.
 */
const agentLetGoMs = 2000;
/** The agent reopens its port 50 ms after a session ends (guest/serve-port.ts); give it a margin. */
const agentReopenMs = 300;

export async function identify(p: string): Promise<FileIdentity> {
  const st = await stat(p);
  return { path: p, sizeBytes: st.size, mtimeMs: Math.trunc(st.mtimeMs) };
}

/** What `spec` asks of a template, with its files identified. */
export async function templateRequest(
  deps: Pick<TemplateDeps, "accel">,
  spec: VmSpec & { readonly binaryPath: string },
  nics: VmConfig["nics"] = [],
  ownNetns = false,
): Promise<TemplateRequest> {
  return {
    accel: deps.accel(),
    binary: spec.binaryPath,
    spec,
    kernel: await identify(spec.kernelPath),
    initrd: await identify(spec.initrdPath),
    disks: await Promise.all(
      (spec.readonlyDisks ?? []).map(async (d) => ({ ...(await identify(d.path)), serial: d.serial })),
    ),
    nics,
    ownNetns,
  };
}

/** Our template tmpfs, nothing mounted there, or something else (said in `other`). */
type MountState =
  { readonly kind: "ours" } | { readonly kind: "none" } | { readonly kind: "other"; readonly why: string };

async function mountState(deps: TemplateDeps, dir: string): Promise<MountState> {
  const mounts = parseMountInfo(await deps.readMountInfo());
  const why = notOurTmpfs(mounts, dir);
  if (why === undefined) return { kind: "ours" };
  return mounts.some((m) => m.mountPoint === dir) ? { kind: "other", why } : { kind: "none" };
}

/**
 * Boots the template VM and saves it in `dir` (a tmpfs it mounts there). Throws with nothing left
 * behind (no QEMU, mount or directory it made).
 */
export async function initTemplate(
  deps: TemplateDeps,
  dir: string,
  spec: TemplateSpec,
  signal: AbortSignal,
  warmup?: TemplateWarmup,
): Promise<TemplateRecord> {
  checkTemplatePath(dir);
  const files = templateFiles(dir);
  const state = await mountState(deps, dir);
  if (state.kind === "ours") {
    const complete = await stat(files.record).then(() => true, ignoreErrno("ENOENT"));
    throw new KataError(
      Code.AlreadyExists,
      complete === true
        ? `a VM template already exists in ${dir} (kata-ts factory destroy removes it)`
        : `an incomplete VM template is in ${dir} (kata-ts factory destroy removes it)`,
    );
  }
  if (state.kind === "other") throw new KataError(Code.FailedPrecondition, `[factory] template_path: ${state.why}`);
  const log = deps.logger.child({ templatePath: dir });
  const undo = new CleanupStack();
  try {
    const made = await mkdir(dir, { recursive: true, mode: 0o700 });
    if (made !== undefined) undo.defer(`remove ${dir}`, () => rmdir(dir));
    const entries = await readdir(dir);
    if (entries.length > 0) {
      throw new KataError(Code.FailedPrecondition, `[factory] template_path ${dir} is not empty: ${entries.join(" ")}`);
    }
    await deps.mounter.mount(
      {
        source: templateMountSource,
        target: dir,
        fstype: "tmpfs",
        options: ["nosuid", "nodev", "noexec", "mode=0700", `size=${templateTmpfsMiB(spec.memoryMiB)}M`],
      },
      signal,
    );
    undo.defer(`unmount ${dir}`, () => deps.mounter.unmount(dir));
    await mkdir(files.share, { mode: 0o700 });
    const request = await templateRequest(deps, spec);
    const nsPath = deps.netns === undefined ? undefined : await templateTap(deps.netns, dir, undo, signal);
    const vm = await deps.hypervisor.startVm(
      {
        ...spec,
        id: "factory-template",
        vmDir: files.vmDir,
        sharedDir: files.share,
        memoryFile: { path: files.memory, share: true },
        ...(nsPath === undefined ? {} : { netnsPath: nsPath, nics: [templateNic] }),
      },
      signal,
    );
    undo.defer("stop the template VM", () => vm.stop());
    const warmed = await agentAnswersThenLetGo(vm, spec.bootTimeoutMs, log, signal, async (agent) =>
      warmup === undefined ? "none" : warmup(files.share, agent, signal),
    );
    if (vm.saveState === undefined) {
      throw new KataError(Code.Unimplemented, `${deps.hypervisor.name} cannot save a VM's state`);
    }
    await vm.saveState(files.state, signal);
    await vm.stop();
    // Its tap was only for the template's QEMU to open: clones open their own, in their pods' netns.
    if (deps.netns !== undefined) await deps.netns.remove(templateNetnsName(dir));
    const record = recordFor(request, spec, {
      nics: nsPath === undefined ? [] : [templateNic],
      stateBytes: (await stat(files.state)).size,
      warmup: warmed,
    });
    // Written last, by rename: a template without its record is incomplete and never used.
    await writeFile(`${files.record}.tmp`, JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
    await rename(`${files.record}.tmp`, files.record);
    undo.release();
    log.info("vm template saved", { stateBytes: record.stateBytes, memoryMiB: record.memoryMiB });
    return record;
  } catch (e) {
    return undo.unwind(wrap(e, `make the VM template in ${dir}`));
  }
}

/**
 * Makes the throwaway netns with the template NIC's tap (the pod path's own tap commands, without a veth
 * to mirror: the template's guest never configures its NIC); returns its path. A netns of that name
 * left by an init that was killed is replaced. Undone by removing the netns, which takes the tap along.
 */
async function templateTap(netns: NetnsPort, dir: string, undo: CleanupStack, signal: AbortSignal): Promise<string> {
  const name = templateNetnsName(dir);
  await netns.remove(name);
  const nsPath = await netns.create(name, signal);
  undo.defer(`remove netns ${name}`, () => netns.remove(name));
  for (const op of tapOps(templateNic.tapName, 1500)) {
    const r = await netns.run(nsPath, op.file, op.args, { signal });
    if (r.code !== 0) {
      throw new KataError(
        Code.Internal,
        `${op.file} ${op.args.join(" ")} in ${nsPath}: ${describeExit(r)}: ${r.stderr.trim()}`,
      );
    }
  }
  return nsPath;
}

/**
 * Waits for the template's agent to answer, then closes the connection and gives the agent time to go
 * back to waiting for a host, so each clone's host finds it listening with no half-read request.
 */
export async function agentAnswersThenLetGo(
  vm: Vm,
  bootTimeoutMs: number,
  log: Logger,
  signal: AbortSignal,
  use: (agent: AgentApi) => Promise<string>,
): Promise<string> {
  const boot = deadline(bootTimeoutMs, signal);
  let client: AgentClient | undefined;
  try {
    client = await AgentClient.connect(vm.agentSocketPath, { signal: boot.signal, logger: log });
    await client.waitReady(boot.signal);
    // waitReady may have left probes in the channel: one more answered call means all were read.
    await client.health.check({}, { signal: boot.signal });
  } catch (e) {
    await client?.close();
    if (signal.aborted) throw abortError(signal, "wait for the template VM's agent");
    throw new KataError(
      Code.DeadlineExceeded,
      `the template VM's agent did not answer within ${bootTimeoutMs} ms; guest console:\n${await vm.consoleTail(20)}`,
      { cause: e },
    );
  } finally {
    boot.clear();
  }
  let used: string;
  try {
    used = await use(client.agent);
    // Everything asked was answered; one more call makes sure nothing is left in the channel.
    await client.health.check({}, { signal });
  } catch (e) {
    await client.close();
    throw wrap(e, `warm up the template VM (guest console:\n${await vm.consoleTail(20)})`);
  }
  let unsubscribe = (): void => {};
  const letGo = new Promise<boolean>((resolve) => {
    unsubscribe = vm.onAgentChannelClosed(() => {
      resolve(true);
    });
    setTimeout(resolve, agentLetGoMs, false).unref();
  });
  await client.close();
  const seen = await letGo;
  unsubscribe();
  if (!seen) log.warn("the template's agent did not close its session in time; saving anyway");
  await delay(agentReopenMs, signal);
  return used;
}

export interface FetchedTemplate {
  readonly files: TemplateFiles;
  readonly record: TemplateRecord;
}

/** The template in `dir` if it is whole and fits `req`; otherwise FAILED_PRECONDITION saying why. */
export async function fetchTemplate(deps: TemplateDeps, dir: string, req: TemplateRequest): Promise<FetchedTemplate> {
  checkTemplatePath(dir);
  const files = templateFiles(dir);
  const state = await mountState(deps, dir);
  if (state.kind === "none") {
    throw new KataError(Code.FailedPrecondition, `no VM template in ${dir} (kata-ts factory init)`);
  }
  if (state.kind === "other") throw new KataError(Code.FailedPrecondition, state.why);
  const record = parseTemplateRecord(await readSmall(files.record));
  const sizeOf = (p: string): Promise<number | undefined> =>
    stat(p).then((s) => (s.isFile() ? s.size : undefined), ignoreErrno("ENOENT"));
  const memBytes = await sizeOf(files.memory);
  if (memBytes !== record.memoryMiB * 1024 * 1024) {
    throw new KataError(
      Code.FailedPrecondition,
      `template memory file ${files.memory}: ${memBytes ?? "missing"}, expected ${record.memoryMiB} MiB`,
    );
  }
  const stateBytes = await sizeOf(files.state);
  if (stateBytes !== record.stateBytes || stateBytes === 0) {
    throw new KataError(
      Code.FailedPrecondition,
      `template state file ${files.state}: ${stateBytes ?? "missing"} bytes, expected ${record.stateBytes}`,
    );
  }
  const mismatches = templateMismatches(record, req);
  if (mismatches.length > 0) {
    throw new KataError(Code.FailedPrecondition, `the VM template does not match: ${mismatches.join("; ")}`);
  }
  return { files, record };
}

async function readSmall(p: string): Promise<string> {
  let f;
  try {
    f = await open(p, "r");
  } catch (e) {
    if (errnoOf(e) === "ENOENT") {
      throw new KataError(Code.FailedPrecondition, `template record ${p} is missing (incomplete template)`);
    }
    throw wrap(e, `read ${p}`);
  }
  try {
    const buf = Buffer.alloc(maxRecordBytes + 1);
    const { bytesRead } = await f.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString("utf8");
  } finally {
    await f.close();
  }
}

/**
 * Starts a clone of `t` for `config`: the same devices, the template's RAM mapped copy-on-write, its
 * device state loaded; the guest runs when this returns. Throws with the clone's QEMU stopped.
 */
export async function startClone(
  deps: TemplateDeps,
  t: FetchedTemplate,
  config: VmConfig,
  signal: AbortSignal,
): Promise<Vm> {
  const { nics } = cloneNics(t.record, config.nics ?? []);
  const vm = await deps.hypervisor.startVm(
    { ...config, nics, memoryFile: { path: t.files.memory, share: false }, incoming: true },
    signal,
  );
  try {
    if (vm.restoreState === undefined) {
      throw new KataError(Code.Unimplemented, `${deps.hypervisor.name} cannot restore a VM's state`);
    }
    await vm.restoreState(t.files.state, signal);
    return vm;
  } catch (e) {
    await vm.stop().catch((stopErr: unknown) => {
      deps.logger.warn("stop a clone that failed to restore", { err: errField(stopErr) });
    });
    throw wrap(e, "restore the VM template");
  }
}

export type TemplateStatus =
  | { readonly state: "on"; readonly record: TemplateRecord }
  | { readonly state: "off" }
  | { readonly state: "broken"; readonly reason: string };

export async function templateStatus(deps: TemplateDeps, dir: string): Promise<TemplateStatus> {
  checkTemplatePath(dir);
  const state = await mountState(deps, dir);
  if (state.kind === "none") return { state: "off" };
  if (state.kind === "other") return { state: "broken", reason: state.why };
  try {
    return { state: "on", record: parseTemplateRecord(await readSmall(templateFiles(dir).record)) };
  } catch (e) {
    return { state: "broken", reason: wrap(e, "read the template").message };
  }
}

/**
 * Removes the template: unmounts its tmpfs and removes the directory. Refuses a path that holds
 * something else, and a template clones still use (their RAM maps its memory file).
 */
export async function destroyTemplate(deps: TemplateDeps, dir: string): Promise<void> {
  checkTemplatePath(dir);
  const state = await mountState(deps, dir);
  if (state.kind === "other") {
    throw new KataError(Code.FailedPrecondition, `[factory] template_path: ${state.why}: not removing it`);
  }
  if (state.kind === "ours") {
    try {
      await deps.mounter.unmount(dir);
    } catch (e) {
      throw new KataError(
        Code.FailedPrecondition,
        `unmount the VM template ${dir}: ${wrap(e, "umount").message} (sandboxes started from it still run? delete them first)`,
        { cause: e },
      );
    }
  }
  // Empty once unmounted (init refuses a non-empty directory); leave anything else alone.
  await rmdir(dir).catch(ignoreErrno("ENOENT"));
  // What an init killed before it saved the template left (init removes it itself otherwise).
  await deps.netns?.remove(templateNetnsName(dir));
}
