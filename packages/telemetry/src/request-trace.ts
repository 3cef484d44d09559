import { context, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import { contextFromHeaders, recordError, startSpan, traceHeaders } from './spans.js';

export type RequestFront = 'gateway' | 'ext_proc';

/**
 * One LLM request's trace through a front (the gateway or Envoy's ext_proc): a SERVER span
 * continuing the client's W3C trace context, the routing work as its children (run inside
 * `run`), and a CLIENT span per upstream call whose context goes on to the pod.
 */
export class RequestTrace {
  private readonly context: Context;
  private upstreamSpan: Span | null = null;
  private ended = false;

  private constructor(readonly span: Span) {
    this.context = trace.setSpan(context.active(), span);
  }

  /** `headers`: the request's, lower-case names (a `traceparent` there makes this span its child). */
  static start(front: RequestFront, method: string, path: string, headers: Readonly<Record<string, string | undefined>>): RequestTrace {
    const parent = contextFromHeaders(headers);
    return new RequestTrace(startSpan(`kvix.${front}.request`, { 'http.request.method': method, 'url.path': path, 'kvix.front': front }, SpanKind.SERVER, parent));
  }

  /** Runs `work` with the request span active, so the spans it starts are its children. */
  run<T>(work: () => Promise<T>): Promise<T> {
    return context.with(this.context, work);
  }

  /**
   * The call to the chosen pod began: its span, and the headers that carry it to the pod (a
   * fallback attempt ends the previous call's span first).
   */
  upstream(endpoint: string, attempt: number): Record<string, string> {
    this.upstreamSpan?.end();
    const span = startSpan('kvix.upstream', { 'server.address': endpoint, 'kvix.attempt': attempt }, SpanKind.CLIENT, this.context);
    this.upstreamSpan = span;
    return traceHeaders(span);
  }

  /** Labels the request with what routing decided. */
  routed(attributes: Record<string, string | number>): void {
    this.span.setAttributes(attributes);
  }

  /** The request is over: status (null when there was no response) or the error that ended it. */
  end(status: number | null, error?: string): void {
    if (this.ended) return;
    this.ended = true;
    for (const span of [this.upstreamSpan, this.span]) {
      if (!span) continue;
      if (status !== null) span.setAttribute('http.response.status_code', status);
      // An Error captures a stack trace (~40 µs per request in a profile of the EPP): only for a span that records it.
      if (error !== undefined) {
        if (span.isRecording()) recordError(span, Object.assign(new Error(error), { code: error }));
      } else if (status !== null && status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
  }
}
