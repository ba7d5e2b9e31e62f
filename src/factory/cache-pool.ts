// The VM cache's pool (docs/factory.md#vm-cache): which VMs are booting, ready, or handed out and waiting
// for their adopter, and when to boot the next one. Pure: the server (cache-server.ts) does what it says.
//
// The pool keeps `size` VMs ready or booting, at most `maxBooting` booting at once (TCG on a small
// host: one boot at a time is faster than two fighting for the CPUs). A VM handed out leaves the pool at
// once, so its refill starts while the sandbox is still taking it over.

import { Code, KataError } from "../base/errors.js";

export type SlotState = "booting" | "ready" | "handedOut";

export interface PoolStatus {
  readonly size: number;
  readonly booting: number;
  readonly ready: number;
  readonly handedOut: number;
  readonly quitting: boolean;
}

export class CachePool {
  readonly size: number;
  readonly maxBooting: number;
  readonly #slots = new Map<string, SlotState>();
  /** Ready VMs in the order they became ready: the oldest is handed out first. */
  readonly #ready: string[] = [];
  #next = 1;
  #quitting = false;

  constructor(size: number, maxBooting = 1) {
    if (!Number.isInteger(size) || size < 1)
      throw new KataError(Code.InvalidArgument, `vm cache size ${size}: must be >= 1`);
    if (!Number.isInteger(maxBooting) || maxBooting < 1) {
      throw new KataError(Code.InvalidArgument, `vm cache boots at once ${maxBooting}: must be >= 1`);
    }
    this.size = size;
    this.maxBooting = maxBooting;
  }

  /** Ids of VMs to start booting now (each is then "booting"). None once quitting. */
  refill(): string[] {
    const out: string[] = [];
    if (this.#quitting) return out;
    while (this.#count("booting") < this.maxBooting && this.#count("booting") + this.#ready.length < this.size) {
      const id = `cache-${this.#next++}`;
      this.#slots.set(id, "booting");
      out.push(id);
    }
    return out;
  }

  /** A boot finished: the VM is ready (true), or it failed or came too late (false: stop it). */
  booted(id: string, ok: boolean): boolean {
    this.#expect(id, "booting");
    if (!ok || this.#quitting) {
      this.#slots.delete(id);
      return false;
    }
    this.#slots.set(id, "ready");
    this.#ready.push(id);
    return true;
  }

  /** The VM to hand out, now "handedOut", or undefined when none is ready. */
  take(): string | undefined {
    if (this.#quitting) return undefined;
    const id = this.#ready.shift();
    if (id !== undefined) this.#slots.set(id, "handedOut");
    return id;
  }

  /** A handed-out VM was adopted, or a VM died or was stopped: it is no longer the pool's. */
  forget(id: string): void {
    this.#slots.delete(id);
    const at = this.#ready.indexOf(id);
    if (at >= 0) this.#ready.splice(at, 1);
  }

  /** Stops refills and hand-outs; returns every VM the server must still stop (booting ones too). */
  quit(): string[] {
    this.#quitting = true;
    this.#ready.length = 0;
    return [...this.#slots.keys()];
  }

  state(id: string): SlotState | undefined {
    return this.#slots.get(id);
  }

  readyIds(): readonly string[] {
    return [...this.#ready];
  }

  status(): PoolStatus {
    return {
      size: this.size,
      booting: this.#count("booting"),
      ready: this.#ready.length,
      handedOut: this.#count("handedOut"),
      quitting: this.#quitting,
    };
  }

  #count(s: SlotState): number {
    let n = 0;
    for (const v of this.#slots.values()) if (v === s) n++;
    return n;
  }

  #expect(id: string, s: SlotState): void {
    const at = this.#slots.get(id);
    // After quit() the server stops what was booting; its boot may still report.
    if (at !== s && !(this.#quitting && at === undefined)) {
      throw new KataError(Code.Internal, `vm cache: ${id} is ${at ?? "unknown"}, expected ${s}`);
    }
  }
}
