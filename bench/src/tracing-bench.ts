import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { AlwaysOffSampler, AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, TracerProvider, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import { withSpanSync } from '@kvix/telemetry';
import { measure, printTable, si, writeResult } from './harness.js';

/** Spans a routing decision opens (request, parse, schedule, ~6 plugins, pick, prefix score, tokenization, hash, lookup, pre-request, upstream). */
const SPANS_PER_DECISION = 16;

/** An exporter that drops what it is given: the cost measured is kvix's and the SDK's, not a network's. */
class DiscardingExporter implements SpanExporter {
  exported = 0;
  export(spans: ReadableSpan[], done: (r: { code: 0 }) => void): void {
    this.exported += spans.length;
    done({ code: 0 });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * What the tracing instrumentation costs on the decision path, per span, in the same run: a plain
 * call (baseline), the instrumented call with no SDK (tracing off, the default), with the SDK on
 * but the request unsampled, and recorded and exported in batches.
 */
export async function run(): Promise<void> {
  let sink = 0;
  const work = (): number => (sink = (sink + 1) | 0);
  const rows: (string | number)[][] = [];
  const result: Record<string, number> = {};
  const record = (name: string, s: { median: number; min: number; max: number }, base: number): void => {
    const ns = 1e9 / s.median;
    rows.push([name, si(s.median), `${si(s.min)}–${si(s.max)}`, ns.toFixed(0), (ns - 1e9 / base).toFixed(0), (((ns - 1e9 / base) * SPANS_PER_DECISION) / 1000).toFixed(2)]);
    result[`${name} calls/s`] = s.median;
  };
  const baseline = measure(work, 1);
  record('plain call (baseline)', baseline, baseline.median);
  record('span, no SDK (tracing off)', measure(() => withSpanSync('kvix.plugin', { a: 'b' }, work), 1), baseline.median);

  const provider = (sampled: boolean, exporter: DiscardingExporter): TracerProvider =>
    new TracerProvider({ sampler: new ParentBasedSampler({ root: sampled ? new AlwaysOnSampler() : new AlwaysOffSampler() }), spanProcessors: [new BatchSpanProcessor({ exporter, maxQueueSize: 65536, maxExportBatchSize: 4096, scheduledDelayMillis: 50 })] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const unsampledExporter = new DiscardingExporter();
  const unsampled = provider(false, unsampledExporter);
  trace.setGlobalTracerProvider(unsampled);
  record('span, SDK on, not sampled', measure(() => withSpanSync('kvix.plugin', { a: 'b' }, work), 1), baseline.median);
  await unsampled.shutdown();
  trace.disable();
  const exporter = new DiscardingExporter();
  const sampled = provider(true, exporter);
  trace.setGlobalTracerProvider(sampled);
  // Recorded spans go to the batch processor's queue; the exporter drains it between rounds.
  record('span, SDK on, recorded', measure(() => withSpanSync('kvix.plugin', { a: 'b' }, work), 1, { repetitions: 5, roundMs: 200, warmupMs: 200 }), baseline.median);
  await sampled.shutdown();
  printTable(`Tracing overhead per span (${SPANS_PER_DECISION} spans per routing decision)`, ['case', 'calls/s', 'spread', 'ns/call', 'added ns', `added µs/decision`], rows);
  writeResult('tracing', { spansPerDecision: SPANS_PER_DECISION, exported: exporter.exported, ...result });
}
