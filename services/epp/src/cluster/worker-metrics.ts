import { AggregatorRegistry, type Registry } from 'prom-client';
import type { MetricFamilyJson } from './messages.js';

/** Index metric families measured where lookups and speculation happen: in the workers (not the primary's replication's). */
const WORKER_SIDE = /^(kvix_index_|kvcache_index_|llm_d_epp_kv_cache_index_).*(lookup|speculati)/;
/**
 * Of those, what every worker's copy of the index counts alike: each copy holds every worker's
 * speculative entries, so each sees the same confirmations and expiries. Summed they would read N
 * times the truth; the largest is the longest-running copy's (a replacement starts from zero).
 */
const SAME_IN_EVERY_COPY = /^kvix_index_specul/;
/** The index's entries per pod: confirmed ones from the primary's index, speculative ones from the workers' copies (only they hold any). */
const POD_ENTRIES = 'kvix_index_pod_entries';

type Family = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];

/**
 * One EPP's metrics from its primary's and its workers' (null: a worker that did not answer), as
 * prom-client's cluster aggregation combines them: counters, histograms and the gauges of a
 * worker's own work summed, what each family's `aggregator` says otherwise. Ingestion and the
 * index's contents are the primary's work (the workers' copies would count it N more times), so a
 * family the primary has is the primary's alone; lookups and speculation happen in the workers
 * (the primary's series of them stay at zero), so those are the workers'.
 */
export function combineWorkerMetrics(primary: readonly Family[], workers: readonly (MetricFamilyJson[] | null)[]): Registry {
  const own = primary.filter((f) => !WORKER_SIDE.test(f.name));
  const mine = new Set(own.map((f) => f.name));
  const theirs = workers.map((families) => (families ?? []).filter((f) => !mine.has(f.name)).map((f) => (SAME_IN_EVERY_COPY.test(f.name) ? { ...f, aggregator: 'max' } : f)));
  const entries = own.find((f) => f.name === POD_ENTRIES);
  if (entries) {
    // Every copy holds every worker's speculative entries: the largest copy's count per pod, once.
    const speculative = new Map<string, number>();
    for (const families of workers) {
      for (const v of families?.find((f) => f.name === POD_ENTRIES)?.values ?? []) {
        if (v.labels['kind'] === 'speculative') speculative.set(String(v.labels['pod']), Math.max(speculative.get(String(v.labels['pod'])) ?? 0, v.value));
      }
    }
    entries.values = [...entries.values.filter((v) => v.labels['kind'] !== 'speculative'), ...[...speculative].map(([pod, value]) => ({ value, labels: { pod, kind: 'speculative' } }))];
  }
  return AggregatorRegistry.aggregate([own, ...theirs]);
}
