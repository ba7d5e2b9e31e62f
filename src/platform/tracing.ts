// Tracing with the OpenTelemetry API. The domain code opens spans through `inSpan`; they are no-ops
// unless a composition root installs an exporter. The one exporter here writes finished spans as JSON
// lines to a file ([runtime] enable_tracing + tracing_exporter = "file:<path>"): enough to see where
// a sandbox's creation spends its time, with no collector to run.

import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import { appendFileSync } from "node:fs";
import {
  ROOT_CONTEXT,
  SpanStatusCode,
  TraceFlags,
  context,
  trace,
  type Attributes,
  type Context,
  type ContextManager,
  type Exception,
  type Link,
  type Span,
  type SpanContext,
  type SpanOptions,
  type SpanStatus,
  type TimeInput,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import { describeError } from "../base/errors.js";

const tracerName = "kata-ts";

/** Runs `fn` in a child span of the active one; the span records a thrown error and always ends. */
export async function inSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>): Promise<T> {
  return trace.getTracer(tracerName).startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn();
    } catch (e) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(e) });
      throw e;
    } finally {
      span.end();
    }
  });
}

class AsyncContextManager implements ContextManager {
  readonly #storage = new AsyncLocalStorage<Context>();

  active(): Context {
    return this.#storage.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#storage.run(ctx, () => fn.apply(thisArg, args));
  }

  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== "function") return target;
    // CAST: a function bound to run in ctx keeps the target's signature.
    const f = target as unknown as (...args: unknown[]) => unknown;
    const bound = (...args: unknown[]): unknown => this.with(ctx, f, undefined, ...args);
    return bound as unknown as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.#storage.disable();
    return this;
  }
}

interface SpanRecord {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly name: string;
  readonly startTime: string;
  readonly durationMs: number;
  readonly attributes: Attributes;
  readonly status: SpanStatus;
  readonly events: { name: string; timeMs: number; attributes?: Attributes }[];
}

class RecordingSpan implements Span {
  readonly #ctx: SpanContext;
  readonly #parent: string | undefined;
  readonly #startWall = new Date();
  readonly #start = performance.now();
  readonly #attributes: Attributes;
  readonly #events: SpanRecord["events"] = [];
  readonly #write: (rec: SpanRecord) => void;
  #name: string;
  #status: SpanStatus = { code: SpanStatusCode.UNSET };
  #ended = false;

  constructor(
    name: string,
    ctx: SpanContext,
    parent: string | undefined,
    attributes: Attributes,
    write: (rec: SpanRecord) => void,
  ) {
    this.#name = name;
    this.#ctx = ctx;
    this.#parent = parent;
    this.#attributes = { ...attributes };
    this.#write = write;
  }

  spanContext(): SpanContext {
    return this.#ctx;
  }
  setAttribute(key: string, value: Attributes[string]): this {
    this.#attributes[key] = value;
    return this;
  }
  setAttributes(attributes: Attributes): this {
    Object.assign(this.#attributes, attributes);
    return this;
  }
  addEvent(name: string, attributesOrTime?: Attributes | TimeInput): this {
    const attributes =
      typeof attributesOrTime === "object" && !(attributesOrTime instanceof Date) && !Array.isArray(attributesOrTime)
        ? attributesOrTime
        : undefined;
    this.#events.push({
      name,
      timeMs: performance.now() - this.#start,
      ...(attributes === undefined ? {} : { attributes }),
    });
    return this;
  }
  /** Links are not recorded by this exporter. */
  addLink(_link: Link): this {
    return this;
  }
  addLinks(_links: Link[]): this {
    return this;
  }
  setStatus(status: SpanStatus): this {
    this.#status = status;
    return this;
  }
  updateName(name: string): this {
    this.#name = name;
    return this;
  }
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#write({
      traceId: this.#ctx.traceId,
      spanId: this.#ctx.spanId,
      parentSpanId: this.#parent,
      name: this.#name,
      startTime: this.#startWall.toISOString(),
      durationMs: Math.round((performance.now() - this.#start) * 1000) / 1000,
      attributes: this.#attributes,
      status: this.#status,
      events: this.#events,
    });
  }
  isRecording(): boolean {
    return !this.#ended;
  }
  recordException(exception: Exception): void {
    this.addEvent("exception", { message: typeof exception === "string" ? exception : (exception.message ?? "") });
  }
}

class FileTracer implements Tracer {
  readonly #write: (rec: SpanRecord) => void;

  constructor(write: (rec: SpanRecord) => void) {
    this.#write = write;
  }

  startSpan(name: string, options: SpanOptions = {}, ctx: Context = context.active()): Span {
    const parent = options.root === true ? undefined : trace.getSpanContext(ctx);
    const spanContext: SpanContext = {
      traceId: parent?.traceId ?? randomBytes(16).toString("hex"),
      spanId: randomBytes(8).toString("hex"),
      traceFlags: TraceFlags.SAMPLED,
    };
    return new RecordingSpan(name, spanContext, parent?.spanId, options.attributes ?? {}, this.#write);
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: unknown[]): ReturnType<F> {
    // CAST: the overloads are (fn), (options, fn) and (options, context, fn): the last argument is fn.
    const fn = rest[rest.length - 1] as F;
    const options = (rest.length >= 2 ? rest[0] : {}) as SpanOptions;
    const parentCtx = (rest.length >= 3 ? rest[1] : context.active()) as Context;
    const span = this.startSpan(name, options, parentCtx);
    // CAST: F returns ReturnType<F> by definition.
    const run = fn as unknown as (s: Span) => ReturnType<F>;
    return context.with(trace.setSpan(parentCtx, span), run, undefined, span);
  }
}

/** Installs the JSON-lines file exporter globally (composition roots only). Write failures are dropped. */
export function installFileTracing(file: string): void {
  const write = (rec: SpanRecord): void => {
    try {
      appendFileSync(file, JSON.stringify(rec) + "\n");
    } catch {
      // Tracing must never fail an operation.
      return;
    }
  };
  const provider: TracerProvider = { getTracer: () => new FileTracer(write) };
  context.setGlobalContextManager(new AsyncContextManager());
  trace.setGlobalTracerProvider(provider);
}
