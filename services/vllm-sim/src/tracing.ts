import { defaultTextMapGetter, ROOT_CONTEXT, SpanKind, type Attributes, type Span } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

/**
 * vLLM's --otlp-traces-endpoint: a span per generation request, continuing the W3C trace context
 * of its headers, exported over OTLP (http/protobuf here). The provider is this pod's own, not the
 * process's global one, so simulated pods sharing a process (tests) each export their own spans.
 */
export class SimTracer {
  private readonly provider: TracerProvider;
  private readonly propagator = new W3CTraceContextPropagator();

  constructor(endpoint: string, model: string) {
    const url = new URL(endpoint);
    if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/traces';
    this.provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'vllm-sim', 'gen_ai.request.model': model }),
      spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: url.toString() }), scheduledDelayMillis: 200 })],
    });
  }

  /** vLLM names its request span `llm_request`; `headers` are the request's (lower-case names). */
  start(headers: Record<string, string | string[] | undefined>, attributes: Attributes): Span {
    const parent = this.propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    return this.provider.getTracer('vllm-sim').startSpan('llm_request', { kind: SpanKind.SERVER, attributes }, parent);
  }

  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}
