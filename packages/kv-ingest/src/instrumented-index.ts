import { ForwardingIndex, type KvBlockIndex, type LookupOptions, type LookupResult, type PrefixMatch, type PrefixMatchOptions } from '@kvix/kv-index';
import type { IngestMetrics } from './metrics.js';

/**
 * Lookup metrics around any index backend (a decorator, so backends stay free of metrics code):
 * requests, the longest run any pod holds from the first key, and latency.
 */
export class InstrumentedIndex extends ForwardingIndex {
  constructor(
    inner: KvBlockIndex,
    private readonly metrics: IngestMetrics,
  ) {
    super(inner);
  }

  override async lookup(requestKeys: BigUint64Array, options?: LookupOptions): Promise<LookupResult> {
    const start = process.hrtime.bigint();
    const result = await this.inner.lookup(requestKeys, options);
    this.metrics.lookupLatency.observe(Number(process.hrtime.bigint() - start) / 1e9);
    this.metrics.lookupRequests.inc();
    if (result.keyCount > 0) {
      // Both llm-d counters mean the longest chain from key 0 one pod holds (llm-d-router #2400).
      const run = longestRun(result);
      this.metrics.lookupHits.inc(run);
      this.metrics.maxPodHitCount.inc(run);
    }
    return result;
  }

  override async matchPrefix(requestKeys: BigUint64Array, options?: PrefixMatchOptions): Promise<PrefixMatch> {
    const start = process.hrtime.bigint();
    const match = await this.inner.matchPrefix(requestKeys, options);
    this.metrics.lookupLatency.observe(Number(process.hrtime.bigint() - start) / 1e9);
    this.metrics.lookupRequests.inc();
    // A prefix match stops at the first key no pod's run from key 0 reaches: the longest run is
    // exactly that long (both llm-d counters mean it, as for lookup above).
    if (match.keyCount > 0) {
      this.metrics.lookupHits.inc(match.keyCount);
      this.metrics.maxPodHitCount.inc(match.keyCount);
    }
    return match;
  }
}

/** The longest run of consecutive keys from key 0 held by one pod. */
function longestRun(result: LookupResult): number {
  const run = new Map<number, number>();
  let best = 0;
  for (let i = 0; i < result.keyCount; i++) {
    for (let j = result.offsets[i]!; j < result.offsets[i + 1]!; j++) {
      const p = result.podIndex[j]!;
      if ((run.get(p) ?? 0) === i) {
        run.set(p, i + 1);
        if (i + 1 > best) best = i + 1;
      }
    }
  }
  return best;
}
