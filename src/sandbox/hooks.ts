// OCI lifecycle hooks (runtime-spec config.md "POSIX-platform Hooks"): each hook runs in order with the
// container state as JSON on stdin, exactly its own env, and an optional timeout in seconds.
// Kata: src/runtime/pkg/katautils/hook.go (runHook: "stdout: …, stderr: …", SIGKILL on timeout).

import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import path from "node:path";
import { abortError, deadline } from "../base/async.js";
import { Code, KataError, codeOf, errnoOf } from "../base/errors.js";
import { errField, type Logger } from "../base/log.js";
import { nsenterCommand } from "../network/netns.js";
import type { Hook, Hooks, State } from "../oci/spec.js";
import { describeExit, type ProcessRunner, type RunResult } from "../platform/process.js";

export type HookKind = keyof Hooks;

export interface HookDeps {
  readonly runner: ProcessRunner;
  /** nsenter binary for hooks that run in a network namespace (default /usr/bin/nsenter). */
  readonly nsenterPath?: string;
}

export interface HookRunOptions {
  /** Run the hooks inside this network namespace (Kata runs prestart hooks in the sandbox's netns). */
  readonly netnsPath?: string | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** Output kept per stream while a hook runs, and the part of it quoted in an error. */
const maxOutputBytes = 64 * 1024;
const maxQuotedChars = 1024;

/**
 * Runs `hooks` in order; the first failure stops the rest and is thrown: NOT_FOUND (no such binary),
 * INVALID_ARGUMENT (bad hook entry), DEADLINE_EXCEEDED (timeout), FAILED_PRECONDITION (non-zero exit),
 * CANCELLED when `opts.signal` aborts. For prestart, createRuntime, createContainer and startContainer,
 * whose failures fail the operation.
 */
export async function runHooks(
  deps: HookDeps,
  kind: HookKind,
  hooks: readonly Hook[],
  state: State,
  opts: HookRunOptions = {},
): Promise<void> {
  const input = JSON.stringify(state);
  for (const hook of hooks) await runHook(deps, kind, hook, input, opts);
}

/**
 * Runs every hook, logging a failure as a warning and going on with the next one: the OCI spec's rule for
 * poststart and poststop. Stops (logging at debug level) only when `opts.signal` aborts. Never throws.
 */
export async function runHooksWarnOnly(
  deps: HookDeps,
  kind: HookKind,
  hooks: readonly Hook[],
  state: State,
  opts: HookRunOptions & { readonly logger: Logger },
): Promise<void> {
  const input = JSON.stringify(state);
  for (const hook of hooks) {
    try {
      await runHook(deps, kind, hook, input, opts);
    } catch (e) {
      const fields = { op: `${kind} hook`, containerId: state.id, path: hook.path, err: errField(e) };
      if (opts.signal?.aborted === true) {
        opts.logger.debug(`${kind} hooks cancelled`, fields);
        return;
      }
      opts.logger.warn(`${kind} hook failed`, fields);
    }
  }
}

/**
 * Checks `hooks` as runHooks would before running each (path absolute and executable, env entries,
 * timeout), without running any: the create path calls it before the VM boots, so a bad hook fails in
 * milliseconds instead of after the boot.
 */
export async function checkHooks(kind: HookKind, hooks: readonly Hook[]): Promise<void> {
  for (const hook of hooks) {
    const what = `${kind} hook ${hook.path}`;
    hookEnv(hook, what);
    hookTimeout(hook, what);
    await checkExecutable(hook.path, what);
  }
}

async function runHook(deps: HookDeps, kind: HookKind, hook: Hook, input: string, opts: HookRunOptions): Promise<void> {
  const what = `${kind} hook ${hook.path}`;
  const env = hookEnv(hook, what);
  const timeoutSeconds = hookTimeout(hook, what);
  await checkExecutable(hook.path, what);

  // args[0] is argv0 (execv semantics); without args the program sees its path, as Go's exec.Cmd does.
  // nsenter execs the hook by its path, so inside a netns argv0 is always the path (documented limit).
  const argv0 = hook.args?.[0] ?? hook.path;
  const rest = hook.args?.slice(1) ?? [];
  const cmd =
    opts.netnsPath === undefined
      ? { file: hook.path, args: rest }
      : nsenterCommand(opts.netnsPath, hook.path, rest, deps.nsenterPath);
  const timer = timeoutSeconds === undefined ? undefined : deadline(timeoutSeconds * 1000, opts.signal);
  const signal = timer?.signal ?? opts.signal;
  let r: RunResult;
  try {
    r = await deps.runner.run(cmd.file, cmd.args, {
      input,
      env,
      maxOutputBytes,
      // The whole process group is SIGKILLed on timeout: a child the hook left behind (`sleep 100 &`)
      // would otherwise hold the output pipes open and keep us waiting.
      killProcessGroup: true,
      ...(opts.netnsPath === undefined ? { argv0 } : {}),
      ...(signal === undefined ? {} : { signal }),
    });
  } catch (e) {
    throw new KataError(codeOf(e), `${what} could not start`, { cause: e });
  } finally {
    timer?.clear();
  }
  if (opts.signal?.aborted === true) throw abortError(opts.signal, what);
  if (timer?.signal.aborted === true) {
    throw new KataError(Code.DeadlineExceeded, `${what} timed out after ${String(timeoutSeconds)}s`);
  }
  if (r.code !== 0) {
    throw new KataError(
      Code.FailedPrecondition,
      `${what} failed: ${describeExit(r)}: stdout: ${quote(r.stdout)}, stderr: ${quote(r.stderr)}`,
    );
  }
}

/** The hook's environment, exactly `hook.env` ("K=V" entries; a later duplicate wins, as in Go's exec). */
function hookEnv(hook: Hook, what: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of hook.env ?? []) {
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new KataError(Code.InvalidArgument, `${what}: env entry ${JSON.stringify(entry)} is not K=V`);
    env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

/** The spec: "If set, timeout MUST be greater than zero" (an integer number of seconds). */
function hookTimeout(hook: Hook, what: string): number | undefined {
  const t = hook.timeout;
  if (t === undefined) return undefined;
  if (!Number.isInteger(t) || t <= 0) {
    throw new KataError(Code.InvalidArgument, `${what}: timeout ${String(t)} is not a positive number of seconds`);
  }
  return t;
}

/** Checked up front so a missing hook is named as such, not as a failed exec inside nsenter. */
async function checkExecutable(file: string, what: string): Promise<void> {
  if (!path.isAbsolute(file)) throw new KataError(Code.InvalidArgument, `${what}: path must be absolute`);
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new KataError(Code.FailedPrecondition, `${what} is not a regular file`);
    await access(file, constants.X_OK);
  } catch (e) {
    if (e instanceof KataError) throw e;
    const errno = errnoOf(e);
    if (errno === "ENOENT") throw new KataError(Code.NotFound, `${what} does not exist`);
    if (errno === "EACCES") throw new KataError(Code.FailedPrecondition, `${what} is not executable`);
    throw new KataError(Code.Internal, `${what}: stat`, { cause: e });
  }
}

/** A hook's output as quoted in an error message: trimmed, and only its tail when long. */
function quote(output: string): string {
  const s = output.trim();
  return s.length <= maxQuotedChars ? s : `…${s.slice(s.length - maxQuotedChars)}`;
}
