import { DEFAULT_BLOCK_SIZE, REQUEST_KEY_ALGORITHMS, RequestKeyHasher, type RequestKeyAlgorithm } from '@kvix/block-keys';
import { DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_SPECULATIVE_TTL_MS, InMemoryIndex, tierWeights, type EventApplier, type IndexObserver, type KvBlockIndex, type TierWeights } from '@kvix/kv-index';
import { parseRedisUrl, RedisIndex, type RedisIndexLogger } from '@kvix/kv-index-redis';
import { z } from 'zod';
import type { IngestMetrics } from './metrics.js';
import { InstrumentedIndex } from './instrumented-index.js';
import { TracedEventApplier, TracedIndex } from './traced-index.js';

/** Where a Redis-backed index lives (llm-d's key schema, so a Go llm-d EPP can share it). */
const RedisSettingsSchema = z
  .object({
    /** `redis://[user:pass@]host:port/db`, `rediss://…` (TLS), `unix:///path.sock`. Setting it selects the Redis backend unless `backend` says memory. */
    url: z.string().min(1).optional(),
    /** Prepended to every key; empty keeps llm-d's exact schema. */
    keyPrefix: z.string().default(''),
    connectTimeoutMs: z.number().int().min(1).default(2000),
    /** A command taking longer fails (and the caller degrades: scoring to load-only, ingestion to replay). */
    commandTimeoutMs: z.number().int().min(1).default(1000),
    /** How often expired speculative entries are swept when idle (every operation also sweeps); 0 = only on use. */
    sweepIntervalMs: z.number().int().min(0).default(250),
    /**
     * Another writer (a Go llm-d EPP) shares the database: clear(pod) also removes its entries of the
     * pod (a bounded walk of the keyspace) and counters are reconciled with what it deletes. false: clear
     * stays proportional to the pod's own entries.
     */
    sharedWithForeignWriters: z.boolean().default(true),
    /** Background reconciliation step interval (0: off). */
    reconcileIntervalMs: z.number().int().min(0).default(5000),
  })
  .strict();

/** Index settings every service embedding an index shares (one validated section of its config). */
export const IndexSettingsSchema = z
  .object({
    /** memory: this process's own index; redis: a Redis/Valkey server replicas share. Default: redis when redis.url is set, else memory. */
    backend: z.enum(['memory', 'redis']).optional(),
    redis: RedisSettingsSchema.prefault({}),
    /** Tokens per request key. Must match the routers and indexers that share keys (llm-d's blockSize), not the engines. */
    blockSize: z.number().int().min(1).max(4096).default(DEFAULT_BLOCK_SIZE),
    /** Seed of the request-key chain (llm-d's hashSeed). */
    hashSeed: z.string().default(''),
    algorithm: z.enum(REQUEST_KEY_ALGORITHMS as [RequestKeyAlgorithm, ...RequestKeyAlgorithm[]]).default('cbor-fnv'),
    maxEntries: z.number().int().min(1024).default(DEFAULT_MAX_ENTRIES),
    maxBytes: z.number().int().min(1 << 20).default(DEFAULT_MAX_BYTES),
    /** Lifetime of speculative entries (routing decisions) the index gives them by default; the adaptive TTL starts here. */
    speculativeTtlMs: z.number().int().min(1).default(DEFAULT_SPECULATIVE_TTL_MS),
    /**
     * Decisions' TTL learned per pod: headroom × the percentile of its recent decision→confirmation
     * latencies, within [minMs, maxMs] (a fixed TTL expires while pods queue). Off: speculativeTtlMs.
     */
    adaptiveSpeculativeTtl: z
      .object({
        enabled: z.boolean().default(true),
        minMs: z.number().int().min(1).default(500),
        maxMs: z.number().int().min(1).default(30_000),
        percentile: z.number().gt(0).max(1).default(0.99),
        headroom: z.number().min(1).default(1.5),
        windowMs: z.number().int().min(1).default(60_000),
        minSamples: z.number().int().min(1).default(16),
      })
      .strict()
      .prefault({}),
    /** Share of KV-event batches traced (a span each, with its index operations) when OpenTelemetry tracing is on. */
    traceBatchRatio: z.number().min(0).max(1).default(0.01),
    /** KV-cache kinds of hybrid models whose groups are indexed. */
    indexedKinds: z.array(z.string().min(1)).min(1).optional(),
    /** Sanity limits: a batch with an event of more engine blocks, or an engine block of more tokens, is refused whole (and counted). */
    maxBlocksPerEvent: z.number().int().min(1).default(65_536),
    maxTokensPerBlock: z.number().int().min(1).default(65_536),
    /** LMCache in-process sends no removals: its entries expire this long after their last announcement (0: never). */
    lmcacheTtlMs: z.number().int().min(0).default(3_600_000),
    /** Weight of a block by tier when scoring (gpu 1.0, cpu 0.8, disk/storage 0.5 unless set). */
    tierWeights: z
      .object({ tiers: z.record(z.string(), z.number().min(0)).optional(), speculative: z.number().min(0).optional(), unknown: z.number().min(0).optional() })
      .strict()
      .default({}),
  })
  .strict()
  .transform((s, ctx) => {
    if (s.adaptiveSpeculativeTtl.minMs > s.adaptiveSpeculativeTtl.maxMs) {
      ctx.addIssue({ code: 'custom', path: ['adaptiveSpeculativeTtl', 'minMs'], message: `minMs (${s.adaptiveSpeculativeTtl.minMs}) is above maxMs (${s.adaptiveSpeculativeTtl.maxMs})` });
      return z.NEVER;
    }
    const backend = s.backend ?? (s.redis.url !== undefined ? 'redis' : 'memory');
    if (backend === 'redis' && s.redis.url === undefined) {
      ctx.addIssue({ code: 'custom', path: ['redis', 'url'], message: 'the redis backend needs a URL (index.redis.url, KVIX_REDIS_URL or --redis-url)' });
      return z.NEVER;
    }
    if (s.redis.url !== undefined) {
      try {
        parseRedisUrl(s.redis.url);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['redis', 'url'], message: (err as Error).message });
        return z.NEVER;
      }
    }
    return { ...s, backend };
  });

export type IndexSettings = z.output<typeof IndexSettingsSchema>;

/** Whether index writes can succeed now, and when a shared backend lost what it held. */
export interface BackendStatus {
  readonly isUp: boolean;
  /** Calls `listener` when the backend came back without the index (restarted empty, flushed). */
  onReset(listener: () => void): void;
}

export interface IndexStack {
  /** The index with lookup metrics: what services query. */
  index: InstrumentedIndex;
  /** The backend itself (debug dumps, benchmarks, replication). */
  backend: InMemoryIndex | RedisIndex;
  hasher: RequestKeyHasher;
  applier: EventApplier;
  weights: TierWeights;
  /** The backend's reachability, for the ingestor (IngestorOptions.backend). */
  status: BackendStatus;
}

export interface IndexStackOptions {
  /**
   * What the event applier writes to instead of the backend itself, e.g. a wrapper publishing every
   * operation to replicas. Lookups still go to the backend.
   */
  applierIndex?: (backend: InMemoryIndex | RedisIndex) => KvBlockIndex;
  /** Where a networked backend logs going down and coming back (a pino logger fits). */
  logger?: RedisIndexLogger;
  /** Told what the index observes, beside the metrics (the adaptive speculative TTL learns from confirmations). */
  observer?: IndexObserver;
}

/**
 * The index (in memory, or on Redis), its hasher and its event applier, wired to the metrics. A
 * Redis backend connects in the background: until it is reachable its operations fail with
 * BACKEND_UNAVAILABLE, which callers already degrade on.
 */
export function createIndexStack(settings: IndexSettings, metrics: IngestMetrics, options: IndexStackOptions = {}): IndexStack {
  const observer = options.observer ? bothObservers(metrics.indexObserver(), options.observer) : metrics.indexObserver();
  const hasher = new RequestKeyHasher({ blockSize: settings.blockSize, seed: settings.hashSeed, algorithm: settings.algorithm });
  const backend =
    settings.backend === 'redis'
      ? new RedisIndex({
          url: settings.redis.url!,
          keyPrefix: settings.redis.keyPrefix,
          speculativeTtlMs: settings.speculativeTtlMs,
          sweepIntervalMs: settings.redis.sweepIntervalMs,
          sharedWithForeignWriters: settings.redis.sharedWithForeignWriters,
          reconcileIntervalMs: settings.redis.reconcileIntervalMs,
          connectTimeoutMs: settings.redis.connectTimeoutMs,
          commandTimeoutMs: settings.redis.commandTimeoutMs,
          observer,
          health: metrics.backendHealth('redis'),
          ...(options.logger ? { logger: options.logger } : {}),
        })
      : new InMemoryIndex({ maxEntries: settings.maxEntries, maxBytes: settings.maxBytes, speculativeTtlMs: settings.speculativeTtlMs, observer });
  metrics.watchIndexSize(backend);
  const applier = new TracedEventApplier(new TracedIndex(options.applierIndex ? options.applierIndex(backend) : backend), {
    hasher,
    observer: metrics.applierObserver(),
    maxBlocksPerEvent: settings.maxBlocksPerEvent,
    maxTokensPerBlock: settings.maxTokensPerBlock,
    lmcacheTtlMs: settings.lmcacheTtlMs,
    ...(settings.indexedKinds ? { indexedKinds: settings.indexedKinds } : {}),
  });
  applier.traceBatches(settings.traceBatchRatio);
  const weights = tierWeights(settings.tierWeights);
  const status: BackendStatus =
    backend instanceof RedisIndex
      ? {
          get isUp() {
            return backend.isUp;
          },
          onReset: (listener) => backend.onDataLoss(listener),
        }
      : { isUp: true, onReset: () => undefined };
  return { index: new InstrumentedIndex(new TracedIndex(backend), metrics), backend, hasher, applier, weights, status };
}

function bothObservers(a: IndexObserver, b: IndexObserver): IndexObserver {
  return {
    admitted: (n) => {
      a.admitted?.(n);
      b.admitted?.(n);
    },
    evicted: (n, cause) => {
      a.evicted?.(n, cause);
      b.evicted?.(n, cause);
    },
    speculationConfirmed: (pod, ms) => {
      a.speculationConfirmed?.(pod, ms);
      b.speculationConfirmed?.(pod, ms);
    },
    speculationExpired: (pod, n) => {
      a.speculationExpired?.(pod, n);
      b.speculationExpired?.(pod, n);
    },
  };
}
