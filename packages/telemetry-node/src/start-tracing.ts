import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';

/** An OTEL_* variable has a value kvix cannot honour; the service refuses to start rather than trace wrongly. */
export class TracingConfigError extends Error {
  override readonly name = 'TracingConfigError';
  readonly code = 'INVALID_OTEL_CONFIG';
}

export interface TracingSettings {
  exporter: 'otlp' | 'console';
  sampler: Sampler;
  samplerName: string;
  /** BatchSpanProcessor settings (OTEL_BSP_*), when set. */
  batch: { scheduledDelayMillis?: number; maxQueueSize?: number; maxExportBatchSize?: number; exportTimeoutMillis?: number };
  /** Where spans go (for the start-up log line). */
  endpoint: string;
}

export interface TracingLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface Tracing {
  readonly settings: TracingSettings;
  /** Exports what is buffered and stops (graceful shutdown). */
  shutdown(): Promise<void>;
}

const SAMPLERS = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'] as const;

function ratioOf(env: NodeJS.ProcessEnv): number {
  const raw = env['OTEL_TRACES_SAMPLER_ARG'];
  if (raw === undefined || raw.trim() === '') return 1;
  const r = Number(raw);
  if (!Number.isFinite(r) || r < 0 || r > 1) throw new TracingConfigError(`OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1, got ${JSON.stringify(raw)}`);
  return r;
}

function samplerOf(env: NodeJS.ProcessEnv): { sampler: Sampler; name: string } {
  const name = (env['OTEL_TRACES_SAMPLER'] ?? 'parentbased_always_on').trim().toLowerCase();
  switch (name as (typeof SAMPLERS)[number]) {
    case 'always_on':
      return { sampler: new AlwaysOnSampler(), name };
    case 'always_off':
      return { sampler: new AlwaysOffSampler(), name };
    case 'traceidratio':
      return { sampler: new TraceIdRatioBasedSampler(ratioOf(env)), name };
    case 'parentbased_always_on':
      return { sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }), name };
    case 'parentbased_always_off':
      return { sampler: new ParentBasedSampler({ root: new AlwaysOffSampler() }), name };
    case 'parentbased_traceidratio':
      return { sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratioOf(env)) }), name };
    default:
      throw new TracingConfigError(`OTEL_TRACES_SAMPLER must be one of ${SAMPLERS.join(', ')}, got ${JSON.stringify(name)}`);
  }
}

function positiveInt(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new TracingConfigError(`${name} must be a whole number, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * What the standard OpenTelemetry variables ask for, or null for no tracing. Tracing is off
 * unless OTEL_TRACES_EXPORTER names otlp or console, or (exporter unset) an OTLP endpoint is set;
 * OTEL_SDK_DISABLED=true turns it off whatever else is set. kvix exports OTLP over HTTP/protobuf.
 */
export function tracingSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): TracingSettings | null {
  if ((env['OTEL_SDK_DISABLED'] ?? '').trim().toLowerCase() === 'true') return null;
  const exporters = (env['OTEL_TRACES_EXPORTER'] ?? '').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
  const endpoint = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] ?? env['OTEL_EXPORTER_OTLP_ENDPOINT'];
  let exporter: TracingSettings['exporter'];
  if (exporters.length === 0) {
    if (endpoint === undefined || endpoint.trim() === '') return null;
    exporter = 'otlp';
  } else if (exporters.includes('none')) return null;
  else if (exporters.length > 1 || !['otlp', 'console'].includes(exporters[0]!)) throw new TracingConfigError(`OTEL_TRACES_EXPORTER must be otlp, console or none, got ${JSON.stringify(env['OTEL_TRACES_EXPORTER'])}`);
  else exporter = exporters[0] as TracingSettings['exporter'];
  const protocol = (env['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'] ?? env['OTEL_EXPORTER_OTLP_PROTOCOL'] ?? 'http/protobuf').trim();
  if (exporter === 'otlp' && protocol !== 'http/protobuf') throw new TracingConfigError(`kvix exports OTLP over http/protobuf; OTEL_EXPORTER_OTLP_PROTOCOL is ${JSON.stringify(protocol)}`);
  const { sampler, name } = samplerOf(env);
  const batch: TracingSettings['batch'] = {};
  const set = (key: keyof TracingSettings['batch'], variable: string): void => {
    const v = positiveInt(env, variable);
    if (v !== undefined) batch[key] = v;
  };
  set('scheduledDelayMillis', 'OTEL_BSP_SCHEDULE_DELAY');
  set('maxQueueSize', 'OTEL_BSP_MAX_QUEUE_SIZE');
  set('maxExportBatchSize', 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE');
  set('exportTimeoutMillis', 'OTEL_BSP_EXPORT_TIMEOUT');
  const where = exporter === 'console' ? 'stdout' : env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] ?? `${(endpoint ?? 'http://localhost:4318').replace(/\/$/, '')}/v1/traces`;
  return { exporter, sampler, samplerName: name, batch, endpoint: where };
}

/**
 * Installs the OpenTelemetry SDK for a service when the environment asks for tracing (see
 * tracingSettingsFromEnv): a tracer provider with the configured sampler, a batching OTLP (or
 * console) exporter, AsyncLocalStorage context and the W3C trace-context and baggage
 * propagators. Returns null, installing nothing, when tracing is off. `serviceName` is the
 * default of OTEL_SERVICE_NAME.
 */
export function startTracing(serviceName: string, logger: TracingLogger, env: NodeJS.ProcessEnv = process.env): Tracing | null {
  const settings = tracingSettingsFromEnv(env);
  if (settings === null) return null;
  const detected = detectResources({ detectors: [envDetector] });
  const resource = resourceFromAttributes({ 'service.name': serviceName }).merge(detected);
  const exporter: SpanExporter = settings.exporter === 'console' ? new ConsoleSpanExporter() : new OTLPTraceExporter();
  const provider = new TracerProvider({ resource, sampler: settings.sampler, spanProcessors: [new BatchSpanProcessor({ exporter, ...settings.batch })] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
  trace.setGlobalTracerProvider(provider);
  logger.info({ exporter: settings.exporter, endpoint: settings.endpoint, sampler: settings.samplerName, serviceName: resource.attributes['service.name'] }, 'tracing on');
  let stopping: Promise<void> | null = null;
  return {
    settings,
    shutdown: () =>
      (stopping ??= provider.shutdown().catch((err: unknown) => {
        logger.warn({ err: (err as Error).message }, 'tracing: the last spans could not be exported');
      })),
  };
}
