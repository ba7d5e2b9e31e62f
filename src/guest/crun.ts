// crun, the OCI runtime inside the guest. Each container runs as `crun run` in the foreground: crun
// waits for the container and exits with its status, so the process stays a child the agent can
// wait for (a detached `crun create` would reparent it to PID 1 and lose its exit status).

import { runChecked, type Child, type ProcessRunner } from "../platform/process.js";

export interface CrunOptions {
  readonly binary: string;
  /** crun's state directory (--root), on guest tmpfs. */
  readonly stateDir: string;
}

export class Crun {
  readonly #runner: ProcessRunner;
  readonly #opts: CrunOptions;

  constructor(runner: ProcessRunner, opts: CrunOptions) {
    this.#runner = runner;
    this.#opts = opts;
  }

  #args(...rest: string[]): string[] {
    return ["--root", this.#opts.stateDir, ...rest];
  }

  /** Starts the container's process with piped stdio; resolves once crun is running. */
  run(containerId: string, bundleDir: string): Promise<Child> {
    return this.#runner.spawn(this.#opts.binary, this.#args("run", "--bundle", bundleDir, containerId), {
      stdio: ["pipe", "pipe", "pipe"],
    });
  }

  /** Starts an extra process in a running container (ExecProcess) from a process.json. */
  exec(containerId: string, processJsonPath: string, tty: boolean): Promise<Child> {
    const args = ["exec", "--process", processJsonPath];
    if (tty) args.push("--tty");
    args.push(containerId);
    return this.#runner.spawn(this.#opts.binary, this.#args(...args), { stdio: ["pipe", "pipe", "pipe"] });
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
