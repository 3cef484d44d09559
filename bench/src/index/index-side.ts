import { RequestKeyHasher } from '@kvix/block-keys';
import type { EventBatch } from '@kvix/kv-events';
import { EventApplier, InMemoryIndex, prefixScores, type KvBlockIndex } from '@kvix/kv-index';
import { gpuStored } from '../stored-event.js';
import { NaiveIndex } from './naive-index.js';
import { BLOCKS_PER_PROMPT, BLOCK_TOKENS, familyKeys, familyTokens, holdingsOf, podName } from './workload.js';

export type IndexImpl = 'kvix' | 'naive';

export interface IndexSideOptions {
  impl: IndexImpl;
  /** Entries to build the index up to, for memory and lookup figures. */
  entries: number;
  pods: number;
  queries: number;
  /** Prompt families applied as events for the ingest figure. */
  ingestFamilies: number;
}

export interface IndexSideResult {
  impl: IndexImpl;
  entries: number;
  keys: number;
  families: number;
  podsPerKey: number;
  buildSeconds: number;
  heapBytes: number;
  bytesPerEntry: number;
  ingestTokensPerSec: number;
  ingestBlocksPerSec: number;
  lookupP50Us: number;
  lookupP90Us: number;
  lookupP99Us: number;
  lookupMeanUs: number;
  matchedBlocksMean: number;
}

function makeIndex(impl: IndexImpl, maxEntries: number): KvBlockIndex {
  // Sized like a deployment would size it: capacity = the entries it is meant to hold.
  return impl === 'kvix' ? new InMemoryIndex({ maxEntries: Math.max(maxEntries, 1000), maxBytes: 64 * 2 ** 30, sweepIntervalMs: 0 }) : new NaiveIndex();
}

function heapNow(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** (a) BlockStored events, 64-token blocks, 32 pods: tokens/s through the applier (rekeying included). */
async function measureIngest(impl: IndexImpl, options: IndexSideOptions): Promise<{ tokensPerSec: number; blocksPerSec: number }> {
  const EVENT_BLOCKS = 16;
  const batches: { batch: EventBatch; pod: string }[] = [];
  let tokens = 0;
  for (let f = 0; f < options.ingestFamilies; f++) {
    const t = familyTokens(1_000_000 + f);
    const engine = familyKeys(1_000_000 + f, 99);
    for (const { pod } of holdingsOf(f, options.pods)) {
      for (let b = 0; b < BLOCKS_PER_PROMPT; b += EVENT_BLOCKS) {
        const ev = gpuStored(
          engine.subarray(b, b + EVENT_BLOCKS),
          b === 0 ? null : engine[b - 1]!,
          t.subarray(b * BLOCK_TOKENS, (b + EVENT_BLOCKS) * BLOCK_TOKENS),
          BLOCK_TOKENS,
        );
        batches.push({ batch: { ts: 0, events: [ev], dataParallelRank: 0 }, pod: podName(pod) });
        tokens += EVENT_BLOCKS * BLOCK_TOKENS;
      }
    }
  }
  const rates: number[] = [];
  for (let round = 0; round < 3; round++) {
    const index = makeIndex(impl, tokens / BLOCK_TOKENS);
    const applier = new EventApplier(index, { hasher: new RequestKeyHasher({ blockSize: BLOCK_TOKENS }) });
    const start = process.hrtime.bigint();
    for (const { batch, pod } of batches) {
      const r = await applier.apply(batch, { pod, model: 'Qwen/Qwen3-32B' });
      if (r.needsReplay) throw new Error('ingest benchmark produced an unknown parent');
    }
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    rates.push(tokens / seconds);
    await index.close();
  }
  rates.sort((a, b) => a - b);
  const tokensPerSec = rates[1]!;
  return { tokensPerSec, blocksPerSec: tokensPerSec / BLOCK_TOKENS };
}

/** One side (kvix or the naive baseline) of the index benchmark, in this process. */
export async function runIndexSide(options: IndexSideOptions): Promise<IndexSideResult> {
  const ingest = await measureIngest(options.impl, options);

  // (c) Build the index to `entries` and measure what it costs the process.
  const before = heapNow();
  const index = makeIndex(options.impl, options.entries);
  const entriesOf: string[] = Array.from({ length: options.pods }, (_, i) => podName(i));
  let entries = 0;
  let families = 0;
  const buildStart = process.hrtime.bigint();
  while (entries < options.entries) {
    const keys = familyKeys(families, 1);
    const engine = familyKeys(families, 2);
    for (const { pod, depth } of holdingsOf(families, options.pods)) {
      const d = Math.min(depth, options.entries - entries);
      if (d <= 0) break;
      await index.add(engine.subarray(0, d), keys.subarray(0, d), [{ pod: entriesOf[pod]!, tier: 'gpu', speculative: false }]);
      entries += d;
    }
    families++;
  }
  const buildSeconds = Number(process.hrtime.bigint() - buildStart) / 1e9;
  const heapBytes = heapNow() - before;
  const stats = await index.stats();

  // (b) Lookup + scoring of an 8,192-token prompt (128 keys) against all 32 pods.
  const QUERY_SET = 512;
  const queryKeys = Array.from({ length: QUERY_SET }, (_, i) => familyKeys(Math.floor((i * families) / QUERY_SET), 1));
  const times = new Float64Array(options.queries);
  let matched = 0;
  // What the scorer runs: each pod's run from one prefix match (kvix walks the keys; the naive
  // index answers with its lookup, scored), then the sorted scores.
  for (let warm = 0; warm < 2000; warm++) {
    const m = await index.matchPrefix(queryKeys[warm % QUERY_SET]!, { pods: entriesOf });
    prefixScores(m, BLOCKS_PER_PROMPT, entriesOf);
  }
  for (let q = 0; q < options.queries; q++) {
    const keys = queryKeys[q % QUERY_SET]!;
    const t0 = process.hrtime.bigint();
    const m = await index.matchPrefix(keys, { pods: entriesOf });
    const scores = prefixScores(m, BLOCKS_PER_PROMPT, entriesOf);
    times[q] = Number(process.hrtime.bigint() - t0) / 1000;
    matched += scores[0]?.matchedBlocks ?? 0;
  }
  const sorted = times.slice().sort();
  await index.close();
  return {
    impl: options.impl,
    entries: stats.entries,
    keys: stats.keys,
    families,
    podsPerKey: stats.entries / stats.keys,
    buildSeconds,
    heapBytes,
    bytesPerEntry: heapBytes / stats.entries,
    ingestTokensPerSec: ingest.tokensPerSec,
    ingestBlocksPerSec: ingest.blocksPerSec,
    lookupP50Us: percentile(sorted, 0.5),
    lookupP90Us: percentile(sorted, 0.9),
    lookupP99Us: percentile(sorted, 0.99),
    lookupMeanUs: times.reduce((a, b) => a + b, 0) / times.length,
    matchedBlocksMean: matched / options.queries,
  };
}
