// A fake crun for component tests of the guest agent: each container's process is a FakeChild run by a
// tiny interpreter of the process's args (from the bundle's config.json or the exec's process.json), so
// a test scripts what its container does with ordinary OCI args. Every verb is recorded, and a test can
// make any verb fail, hang or lag.
//
// The interpreter knows: `echo WORDS [>&2]`, `cat` (stdin to stdout until end of input), `sleep N`
// (`sleep`/`sleep inf` until killed), `exit N`, `true`, `false`, and `sh -c "cmd; cmd"` of those.
// Anything else prints "sh: NAME: not found" on stderr and sets status 127, as a shell would.

import { readFile } from "node:fs/promises";
import { constants } from "node:os";
import path from "node:path";
import type { Writable } from "node:stream";
import { deferred, delay } from "../../src/base/async.js";
import { Code, KataError } from "../../src/base/errors.js";
import type { CrunPort, TtyOptions } from "../../src/guest/crun.js";
import type { Process, Spec } from "../../src/oci/spec.js";
import { FakeChild } from "./fakes.js";

export type CrunVerb = keyof CrunPort;

/** What an injected fault does to a crun call: fail with `fail`, never return, or return `delayMs` late. */
export type CrunFault = { readonly fail: Error } | { readonly hang: true } | { readonly delayMs: number };

export interface CrunCall {
  readonly verb: CrunVerb;
  readonly containerId: string;
  /** The verb's other arguments (bundle dir, signal and --all, resources, tty), as passed. */
  readonly args: readonly unknown[];
}

/** Signals whose default action is to do nothing; every other one ends a scripted process. */
const ignoredByDefault: ReadonlySet<NodeJS.Signals> = new Set(["SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH"]);

const signalNames: ReadonlyMap<number, NodeJS.Signals> = new Map(
  // CAST: the keys of os.constants.signals are exactly the signal names.
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals] as const),
);

/** A container process: a FakeChild that runs `argv` through the interpreter once started. */
export class ScriptedProcess extends FakeChild {
  readonly argv: readonly string[];
  readonly tty: TtyOptions | undefined;
  readonly #killed = deferred<undefined>();

  constructor(argv: readonly string[], tty: TtyOptions | undefined) {
    super();
    this.argv = argv;
    this.tty = tty;
  }

  override kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.hasExited) return;
    if (ignoredByDefault.has(signal)) {
      this.signals.push(signal);
      return;
    }
    super.kill(signal);
    this.#killed.resolve(undefined);
  }

  /** Runs the script on the next turn, as a process starts after its spawn returns. */
  start(): void {
    setImmediate(() => {
      void this.#run();
    });
  }

  async #run(): Promise<void> {
    let status = 0;
    for (const cmd of commandsOf(this.argv)) {
      if (this.hasExited) return;
      const result = await this.#step(cmd);
      if (result === "killed") return;
      status = result.status;
      if (result.exit) break;
    }
    this.exit({ code: status, signal: null });
  }

  async #step(cmd: readonly string[]): Promise<"killed" | { status: number; exit: boolean }> {
    const [name = "", ...rest] = cmd;
    switch (name) {
      case "echo": {
        const toStderr = rest.at(-1) === ">&2";
        const words = toStderr ? rest.slice(0, -1) : rest;
        this.#write(toStderr ? this.stderr : this.stdout, words.join(" ") + "\n");
        return { status: 0, exit: false };
      }
      case "cat":
        return (await this.#cat()) ? { status: 0, exit: false } : "killed";
      case "sleep": {
        const s = Number(rest[0]);
        const forever = rest.length === 0 || !Number.isFinite(s);
        const r = await new Promise<"killed" | "slept">((resolve) => {
          // The timer goes with the process: a killed `sleep 60` must not keep the test runner alive.
          const timer = forever ? undefined : setTimeout(resolve, s * 1000, "slept");
          void this.#killed.promise.then(() => {
            clearTimeout(timer);
            resolve("killed");
          });
        });
        return r === "killed" ? r : { status: 0, exit: false };
      }
      case "exit":
        return { status: Number(rest[0] ?? 0) & 0xff, exit: true };
      case "true":
        return { status: 0, exit: false };
      case "false":
        return { status: 1, exit: false };
      default:
        this.#write(this.stderr, `sh: ${name}: not found\n`);
        return { status: 127, exit: false };
    }
  }

  /** Copies stdin to stdout; false when the process was killed first. */
  async #cat(): Promise<boolean> {
    const ended = new Promise<boolean>((resolve) => {
      this.stdin.on("data", (chunk: Buffer) => {
        this.#write(this.stdout, chunk);
      });
      this.stdin.once("end", () => {
        resolve(true);
      });
    });
    return Promise.race([ended, this.#killed.promise.then(() => false)]);
  }

  #write(out: Writable, data: string | Buffer): void {
    if (!this.hasExited) out.write(data);
  }
}

/** The commands of argv: `sh -c SCRIPT` is split on ";" and newlines, anything else is one command. */
function commandsOf(argv: readonly string[]): string[][] {
  if (argv[0] !== "sh" || argv[1] !== "-c") return [[...argv]];
  const script = argv[2] ?? "";
  return script
    .split(/[;\n]/)
    .map((c) => [...c.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3] ?? ""))
    .filter((c) => c.length > 0);
}

interface FakeContainer {
  readonly id: string;
  readonly bundleDir: string;
  readonly spec: Spec;
  readonly init: ScriptedProcess;
  readonly execs: ScriptedProcess[];
  paused: boolean;
}

interface ArmedFault {
  readonly fault: CrunFault;
  remaining: number;
}

export class FakeCrun implements CrunPort {
  readonly calls: CrunCall[] = [];
  readonly #containers = new Map<string, FakeContainer>();
  readonly #faults = new Map<CrunVerb, ArmedFault>();
  #unhang = deferred<undefined>();

  /** Makes the next `times` calls of `verb` (default: all of them) fail, hang or lag. */
  inject(verb: CrunVerb, fault: CrunFault, opts: { times?: number } = {}): void {
    this.#faults.set(verb, { fault, remaining: opts.times ?? Infinity });
  }

  /** Removes the fault on `verb`, or every fault; hung calls go on. */
  clearFaults(verb?: CrunVerb): void {
    if (verb === undefined) this.#faults.clear();
    else this.#faults.delete(verb);
    this.#unhang.resolve(undefined);
    this.#unhang = deferred<undefined>();
  }

  /** Container ids crun knows (run and not deleted). */
  containerIds(): string[] {
    return [...this.#containers.keys()];
  }

  /** The init process of a container crun runs. */
  init(containerId: string): ScriptedProcess {
    return this.#get("init", containerId).init;
  }

  /** The exec processes started in a container, in order. */
  execs(containerId: string): readonly ScriptedProcess[] {
    return this.#get("exec", containerId).execs;
  }

  /** Every process still running, in every container. */
  running(): ScriptedProcess[] {
    return [...this.#containers.values()].flatMap((c) => [c.init, ...c.execs]).filter((p) => !p.hasExited);
  }

  /** SIGKILLs every process: the VM is gone. */
  killAll(): void {
    for (const p of this.running()) p.kill("SIGKILL");
  }

  /** The whole guest's `ps` table, header first (for ListProcesses "table"). */
  psTable(): string {
    const rows = this.running().map((p) => `${p.pid} root 0:00 ${p.argv.join(" ")}`);
    return ["PID USER TIME COMMAND", ...rows].join("\n") + "\n";
  }

  async run(containerId: string, bundleDir: string, tty?: TtyOptions): Promise<ScriptedProcess> {
    await this.#enter("run", containerId, [bundleDir, tty]);
    if (this.#containers.has(containerId)) throw crunError("run", containerId, "container already exists");
    // CAST: the agent writes the spec it converted from the host's; the fake only reads process.args.
    const spec = JSON.parse(await readFile(path.join(bundleDir, "config.json"), "utf8")) as Spec;
    const init = new ScriptedProcess(spec.process?.args ?? [], tty);
    this.#containers.set(containerId, { id: containerId, bundleDir, spec, init, execs: [], paused: false });
    init.start();
    return init;
  }

  async exec(containerId: string, processJsonPath: string, tty?: TtyOptions): Promise<ScriptedProcess> {
    await this.#enter("exec", containerId, [processJsonPath, tty]);
    const c = this.#get("exec", containerId);
    if (c.init.hasExited) throw crunError("exec", containerId, "container is not running");
    // CAST: the agent writes the process it converted; the fake only reads its args.
    const proc = JSON.parse(await readFile(processJsonPath, "utf8")) as Process;
    const p = new ScriptedProcess(proc.args ?? [], tty);
    c.execs.push(p);
    p.start();
    return p;
  }

  async kill(containerId: string, signal: number, all: boolean): Promise<void> {
    await this.#enter("kill", containerId, [signal, all]);
    const c = this.#get("kill", containerId);
    if (c.init.hasExited) throw crunError("kill", containerId, "container is not running");
    const name = signalNames.get(signal);
    if (name === undefined) throw crunError("kill", containerId, `unknown signal ${signal}`);
    c.init.kill(name);
    if (all) for (const e of c.execs) e.kill(name);
  }

  async delete(containerId: string): Promise<void> {
    await this.#enter("delete", containerId, []);
    const c = this.#get("delete", containerId);
    for (const p of [c.init, ...c.execs]) p.kill("SIGKILL");
    this.#containers.delete(containerId);
  }

  async update(containerId: string, resourcesJsonPath: string): Promise<void> {
    await this.#enter("update", containerId, [JSON.parse(await readFile(resourcesJsonPath, "utf8"))]);
    this.#get("update", containerId);
  }

  async pause(containerId: string): Promise<void> {
    await this.#enter("pause", containerId, []);
    const c = this.#get("pause", containerId);
    if (c.init.hasExited || c.paused) throw crunError("pause", containerId, "container is not running");
    c.paused = true;
  }

  async resume(containerId: string): Promise<void> {
    await this.#enter("resume", containerId, []);
    const c = this.#get("resume", containerId);
    if (!c.paused) throw crunError("resume", containerId, "container is not paused");
    c.paused = false;
  }

  async ps(containerId: string): Promise<number[]> {
    await this.#enter("ps", containerId, []);
    const c = this.#get("ps", containerId);
    return [c.init, ...c.execs].filter((p) => !p.hasExited).map((p) => p.pid);
  }

  /** Records the call, then applies the verb's fault, if one is armed. */
  async #enter(verb: CrunVerb, containerId: string, args: unknown[]): Promise<void> {
    this.calls.push({ verb, containerId, args });
    const armed = this.#faults.get(verb);
    if (armed === undefined || armed.remaining <= 0) return;
    armed.remaining--;
    const f = armed.fault;
    if ("fail" in f) throw f.fail;
    if ("hang" in f) await this.#unhang.promise;
    else await delay(f.delayMs);
  }

  #get(verb: string, containerId: string): FakeContainer {
    const c = this.#containers.get(containerId);
    if (c === undefined) throw crunError(verb, containerId, "container does not exist");
    return c;
  }
}

/** Fails like runChecked does when crun exits non-zero. */
function crunError(verb: string, containerId: string, what: string): KataError {
  return new KataError(Code.Internal, `crun ${verb} ${containerId}: exit code 1: ${what}`);
}
