import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';

export type SpanAttributes = Attributes;

/**
 * kvix's tracer. Without an SDK installed (a service started with no OTEL_* configuration) every
 * span is a non-recording no-op: libraries trace unconditionally and pay almost nothing.
 */
export function tracer(): Tracer {
  return TRACER;
}

// A proxy: it follows whichever provider a service installs later, so it can be taken once.
const TRACER: Tracer = trace.getTracer('kvix');

/** Marks a span failed with `err` (its message and stable code when it has one). */
export function recordError(span: Span, err: unknown): void {
  // A span nobody records (tracing off) would only throw the details away; building them is not free.
  if (!span.isRecording()) return;
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  span.recordException({ name: e.name, message: e.message, ...(e.stack !== undefined ? { stack: e.stack } : {}) });
  if (typeof code === 'string') span.setAttribute('kvix.error.code', code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
}

/** Runs `work` in a child span of the active one, ending it (failed on a throw) when `work` settles. */
export async function withSpan<T>(name: string, attributes: Attributes, work: (span: Span) => Promise<T> | T, kind: SpanKind = SpanKind.INTERNAL): Promise<T> {
  return tracer().startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await work(span);
    } catch (err) {
      recordError(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/**
 * Like withSpan, but only inside a trace already under way (a request, a sampled batch): work that
 * also runs outside any request (index operations from debug routes, background sweeps) starts no
 * traces of its own.
 */
export function spanIfTracing<T>(name: string, attributes: Attributes, work: () => Promise<T>): Promise<T> {
  const parent = trace.getActiveSpan();
  if (parent === undefined || !parent.isRecording()) return work();
  return withSpan(name, attributes, () => work());
}

/** Starts a span (not made active) under `parent`, for work whose end is an event rather than a return. */
export function startSpan(name: string, attributes: Attributes, kind: SpanKind, parent: Context = context.active(), startTime?: number): Span {
  return tracer().startSpan(name, { kind, attributes, ...(startTime !== undefined ? { startTime } : {}) }, parent);
}

/** The trace context a request's headers carry (W3C traceparent/tracestate, with the SDK's propagator). */
export function contextFromHeaders(headers: Readonly<Record<string, string | undefined>>): Context {
  return propagation.extract(ROOT_CONTEXT, headers);
}

/** Headers carrying `span`'s context to the next hop (empty without an SDK or for a non-recording span). */
export function traceHeaders(span: Span): Record<string, string> {
  const out: Record<string, string> = {};
  if (!span.isRecording()) return out;
  propagation.inject(trace.setSpan(context.active(), span), out);
  return out;
}

/**
 * Samples background work (one span per KV-event batch would be thousands a second): true for
 * about `ratio` of the calls, spread evenly rather than at random so a test with ratio 1 sees
 * every one and ratio 0 none.
 */
export class Sampled {
  private credit = 0;
  constructor(private readonly ratio: number) {}
  next(): boolean {
    if (this.ratio <= 0) return false;
    this.credit += this.ratio;
    if (this.credit < 1) return false;
    this.credit -= 1;
    return true;
  }
}

/** withSpan for synchronous work (a filter, a picker, hashing): no promise, no await. */
export function withSpanSync<T>(name: string, attributes: Attributes, work: (span: Span) => T): T {
  return tracer().startActiveSpan(name, { attributes }, (span) => {
    try {
      return work(span);
    } catch (err) {
      recordError(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}
