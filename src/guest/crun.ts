// crun, the OCI runtime inside the guest. Each container runs as `crun run` in the foreground: crun
// waits for the container and exits with its status, so the process stays a child the agent can
// wait for (a detached `crun create` would reparent it to PID 1 and lose its exit status).

import { Code, KataError } from "../base/errors.js";
import { runChecked, type Child, type ProcessRunner } from "../platform/process.js";

/** A process on a terminal: run under the pty helper, which resizes it on SIGUSR1 from resizeFile. */
export interface TtyOptions {
  readonly rows: number;
  readonly cols: number;
  readonly resizeFile: string;
}

export interface CrunOptions {
  readonly binary: string;
  /** The static pty helper (kata-ts-tty); absent, terminal processes are refused. */
  readonly ttyHelper?: string;
  /** crun's state directory (--root), on guest tmpfs. */
  readonly stateDir: string;
}

/**
 * What the agent asks of the OCI runtime, one method per crun verb it uses. Crun is the real one; the
 * component tests' fake crun implements this too (Crun's #private fields make the class nominal).
 */
export interface CrunPort {
  /** `crun run`: starts the container's init with piped stdio, held as a child until it exits. */
  run(containerId: string, bundleDir: string, tty?: TtyOptions): Promise<Child>;
  /** `crun exec --process`: starts another process in a running container. */
  exec(containerId: string, processJsonPath: string, tty?: TtyOptions): Promise<Child>;
  kill(containerId: string, signal: number, all: boolean): Promise<void>;
  delete(containerId: string): Promise<void>;
  update(containerId: string, resourcesJsonPath: string): Promise<void>;
  pause(containerId: string): Promise<void>;
  resume(containerId: string): Promise<void>;
  /** Guest pids of the container's processes. */
  ps(containerId: string): Promise<number[]>;
}

export class Crun implements CrunPort {
  readonly #runner: ProcessRunner;
  readonly #opts: CrunOptions;

  constructor(runner: ProcessRunner, opts: CrunOptions) {
    this.#runner = runner;
    this.#opts = opts;
  }

  #args(...rest: string[]): string[] {
    return ["--root", this.#opts.stateDir, ...rest];
  }

  /**
   * Starts the container's process with piped stdio; resolves once crun is running. With a terminal,
   * crun runs on the helper's pty and the container (configured without one) inherits it: one pty,
   * which the helper resizes.
   */
  run(containerId: string, bundleDir: string, tty?: TtyOptions): Promise<Child> {
    return this.#spawn(this.#args("run", "--bundle", bundleDir, containerId), tty);
  }

  /** Starts an extra process in a running container (ExecProcess) from a process.json. */
  exec(containerId: string, processJsonPath: string, tty?: TtyOptions): Promise<Child> {
    return this.#spawn(this.#args("exec", "--process", processJsonPath, containerId), tty);
  }

  #spawn(args: string[], tty: TtyOptions | undefined): Promise<Child> {
    const stdio = { stdio: ["pipe", "pipe", "pipe"] as "pipe"[] };
    if (tty === undefined) return this.#runner.spawn(this.#opts.binary, args, stdio);
    const helper = this.#opts.ttyHelper;
    if (helper === undefined) {
      return Promise.reject(
        new KataError(Code.FailedPrecondition, "terminal processes need kata-ts-tty in the guest image"),
      );
    }
    return this.#runner.spawn(
      helper,
      ["run", String(tty.rows), String(tty.cols), tty.resizeFile, "--", this.#opts.binary, ...args],
      stdio,
    );
  }

  async kill(containerId: string, signal: number, all: boolean): Promise<void> {
    const args = ["kill"];
    if (all) args.push("--all");
    args.push(containerId, String(signal));
    await runChecked(this.#runner, this.#opts.binary, this.#args(...args));
  }

  async delete(containerId: string): Promise<void> {
    await runChecked(this.#runner, this.#opts.binary, this.#args("delete", "--force", containerId));
  }

  async update(containerId: string, resourcesJsonPath: string): Promise<void> {
    await runChecked(
      this.#runner,
      this.#opts.binary,
      this.#args("update", "--resources", resourcesJsonPath, containerId),
    );
  }

  async pause(containerId: string): Promise<void> {
    await runChecked(this.#runner, this.#opts.binary, this.#args("pause", containerId));
  }

  async resume(containerId: string): Promise<void> {
    await runChecked(this.#runner, this.#opts.binary, this.#args("resume", containerId));
  }

  /** Guest pids of the container's processes. */
  async ps(containerId: string): Promise<number[]> {
    const r = await runChecked(this.#runner, this.#opts.binary, this.#args("ps", "--format", "json", containerId));
    const parsed: unknown = JSON.parse(r.stdout);
    return Array.isArray(parsed) ? parsed.filter((p): p is number => typeof p === "number") : [];
  }
}
