import { DEFAULT_BLOCK_SIZE, REQUEST_KEY_ALGORITHMS, RequestKeyHasher, type RequestKeyAlgorithm } from '@kvix/block-keys';
import { DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_SPECULATIVE_TTL_MS, EventApplier, InMemoryIndex, tierWeights, type TierWeights } from '@kvix/kv-index';
import { z } from 'zod';
import type { IngestMetrics } from './metrics.js';
import { InstrumentedIndex } from './instrumented-index.js';

/** Index settings every service embedding an index shares (one validated section of its config). */
export const IndexSettingsSchema = z
  .object({
    /** Tokens per request key. Must match the routers and indexers that share keys (llm-d's blockSize), not the engines. */
    blockSize: z.number().int().min(1).max(4096).default(DEFAULT_BLOCK_SIZE),
    /** Seed of the request-key chain (llm-d's hashSeed). */
    hashSeed: z.string().default(''),
    algorithm: z.enum(REQUEST_KEY_ALGORITHMS as [RequestKeyAlgorithm, ...RequestKeyAlgorithm[]]).default('cbor-fnv'),
    maxEntries: z.number().int().min(1024).default(DEFAULT_MAX_ENTRIES),
    maxBytes: z.number().int().min(1 << 20).default(DEFAULT_MAX_BYTES),
    speculativeTtlMs: z.number().int().min(1).default(DEFAULT_SPECULATIVE_TTL_MS),
    /** KV-cache kinds of hybrid models whose groups are indexed. */
    indexedKinds: z.array(z.string().min(1)).min(1).optional(),
    /** Weight of a block by tier when scoring (gpu 1.0, cpu 0.8, disk/storage 0.5 unless set). */
    tierWeights: z
      .object({ tiers: z.record(z.string(), z.number().min(0)).optional(), speculative: z.number().min(0).optional(), unknown: z.number().min(0).optional() })
      .strict()
      .default({}),
  })
  .strict();

export type IndexSettings = z.output<typeof IndexSettingsSchema>;

export interface IndexStack {
  /** The index with lookup metrics: what services query. */
  index: InstrumentedIndex;
  /** The backend itself (debug dumps, benchmarks). */
  backend: InMemoryIndex;
  hasher: RequestKeyHasher;
  applier: EventApplier;
  weights: TierWeights;
}

/** The in-memory index, its hasher and its event applier, wired to the metrics. */
export function createIndexStack(settings: IndexSettings, metrics: IngestMetrics): IndexStack {
  const hasher = new RequestKeyHasher({ blockSize: settings.blockSize, seed: settings.hashSeed, algorithm: settings.algorithm });
  const backend = new InMemoryIndex({ maxEntries: settings.maxEntries, maxBytes: settings.maxBytes, speculativeTtlMs: settings.speculativeTtlMs, observer: metrics.indexObserver() });
  const applier = new EventApplier(backend, { hasher, observer: metrics.applierObserver(), ...(settings.indexedKinds ? { indexedKinds: settings.indexedKinds } : {}) });
  const weights = tierWeights(settings.tierWeights);
  return { index: new InstrumentedIndex(backend, metrics), backend, hasher, applier, weights };
}
