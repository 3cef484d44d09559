import { Counter, Gauge, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { MetricFamilyJson } from '../src/cluster/messages.js';
import { combineWorkerMetrics } from '../src/cluster/worker-metrics.js';

/** A worker's families as they cross the cluster channel (plain data). */
async function families(build: (registry: Registry) => void): Promise<MetricFamilyJson[]> {
  const registry = new Registry();
  build(registry);
  return (await registry.getMetricsAsJSON()).map((f) => ({ name: f.name, help: f.help, type: String(f.type), aggregator: f.aggregator, values: f.values.map((v) => ({ value: v.value, labels: { ...v.labels } as Record<string, string | number> })) }));
}

function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

describe('combineWorkerMetrics', () => {
  it("keeps the primary's ingestion and index, sums the workers' own work, and counts what every index copy sees once", async () => {
    const primary = new Registry();
    new Counter({ name: 'kvix_ingest_batches_applied_total', help: 'h', registers: [primary] }).inc(7);
    // The primary's own (idle) lookup and speculation series: the workers' are the real ones.
    new Counter({ name: 'kvcache_index_lookup_requests_total', help: 'h', registers: [primary] });
    new Counter({ name: 'kvix_index_speculative_confirmed_total', help: 'h', registers: [primary] });
    const entries = new Gauge({ name: 'kvix_index_pod_entries', help: 'h', labelNames: ['pod', 'kind'], registers: [primary] });
    entries.set({ pod: 'a', kind: 'confirmed' }, 100);
    entries.set({ pod: 'a', kind: 'speculative' }, 0);
    new Counter({ name: 'kvix_replication_speculations_received_total', help: 'h', registers: [primary] }).inc(4);
    const worker = (lookups: number, confirmed: number, speculative: number, ingested: number): Promise<MetricFamilyJson[]> =>
      families((r) => {
        new Counter({ name: 'kvix_ingest_batches_applied_total', help: 'h', registers: [r] }).inc(ingested);
        new Counter({ name: 'kvcache_index_lookup_requests_total', help: 'h', registers: [r] }).inc(lookups);
        new Counter({ name: 'kvix_index_speculative_confirmed_total', help: 'h', registers: [r] }).inc(confirmed);
        const g = new Gauge({ name: 'kvix_index_pod_entries', help: 'h', labelNames: ['pod', 'kind'], registers: [r] });
        g.set({ pod: 'a', kind: 'confirmed' }, 100);
        g.set({ pod: 'a', kind: 'speculative' }, speculative);
        new Counter({ name: 'llm_d_epp_request_total', help: 'h', registers: [r] }).inc(lookups);
      });
    const combined = combineWorkerMetrics(await primary.getMetricsAsJSON(), [await worker(10, 13, 5, 99), null, await worker(20, 12, 4, 99)]);
    const text = await combined.metrics();
    expect(value(text, 'kvix_ingest_batches_applied_total')).toBe(7);
    expect(value(text, 'kvcache_index_lookup_requests_total')).toBe(30);
    expect(value(text, 'llm_d_epp_request_total')).toBe(30);
    expect(value(text, 'kvix_index_speculative_confirmed_total')).toBe(13);
    expect(value(text, 'kvix_index_pod_entries{pod="a",kind="confirmed"}')).toBe(100);
    expect(value(text, 'kvix_index_pod_entries{pod="a",kind="speculative"}')).toBe(5);
    // The primary's replication counters are not mistaken for the workers' speculation.
    expect(value(text, 'kvix_replication_speculations_received_total')).toBe(4);
  });
});
