import { Counter, Gauge, type Histogram, type Registry } from 'prom-client';
import { FastHistogram } from '@kvix/telemetry';
import type { ApplierObserver, IndexObserver, KvBlockIndex, RemoveSkipReason, StoreSkipReason } from '@kvix/kv-index';
import type { BackendHealthObserver } from '@kvix/kv-index-redis';
import { REPLAY_OUTCOMES, REPLAY_REASONS, type ReplayOutcome, type ReplayReason } from './stream/pod-stream.js';

const P = 'llm_d_epp_kv_cache_';

function renamed<L extends string>(labels: { pod: string } & Partial<Record<L, string>>): Partial<Record<'pod_identifier' | L, string>> {
  // pod_identifier first, where `pod` stood: label order in the exposition follows insertion.
  const out: Record<string, string | undefined> = { pod_identifier: labels.pod, ...labels };
  delete out['pod'];
  return out as Partial<Record<'pod_identifier' | L, string>>;
}

/** A counter whose `pod` label is written as llm-d's `pod_identifier` (callers keep kvix's name). */
class PodIdentifierCounter<L extends string> {
  constructor(private readonly counter: Counter<'pod_identifier' | L>) {}
  inc(labels: { pod: string } & Partial<Record<L, string>>, n = 1): void {
    this.counter.inc(renamed(labels), n);
  }
  remove(labels: { pod: string } & Partial<Record<L, string>>): void {
    this.counter.remove(renamed(labels));
  }
}

/** llm-d dual-emits its six index series and two dedup counters under their old `kvcache_*` names too. */
class TwinCounter {
  constructor(
    private readonly current: Counter,
    private readonly legacy: Counter,
  ) {}
  inc(n = 1): void {
    this.current.inc(n);
    this.legacy.inc(n);
  }
}

class TwinHistogram {
  constructor(
    private readonly current: Histogram,
    private readonly legacy: Histogram,
  ) {}
  observe(seconds: number): void {
    this.current.observe(seconds);
    this.legacy.observe(seconds);
  }
}

/** Values of the `operation` label of the error counter. */
export const ZMQ_ERROR_OPERATIONS = ['frames', 'decode', 'event', 'apply', 'topic'] as const;

/** Lag from a batch's engine timestamp to applied, in seconds. */
const LAG_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const LOOKUP_BUCKETS = [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05];

/**
 * Ingestion and index metrics under the names existing llm-d dashboards query
 * (`llm_d_epp_kv_cache_*`), plus kvix's per-pod series (`kvix_ingest_*`).
 */
export class IngestMetrics {
  readonly messagesReceived: PodIdentifierCounter<never>;
  readonly activeSubscribers: Gauge;
  readonly reconnections: PodIdentifierCounter<never>;
  readonly zmqErrors: PodIdentifierCounter<'operation'>; // operation: one of ZMQ_ERROR_OPERATIONS
  readonly publishersRefused: Counter;
  /** llm-d's labels are `cache_kind` (when known) and `reason`. */
  readonly storesSkipped: Counter<'cache_kind' | 'reason'>;
  readonly removalsSkipped: Counter<'cache_kind' | 'reason'>;
  readonly dedupSuppressed: TwinCounter;
  readonly dedupForwarded: TwinCounter;
  readonly queueDepth: Gauge;
  readonly queueCapacity: Gauge;
  readonly indexAdmissions: TwinCounter;
  /** llm-d's eviction counter is unlabelled; kvix's `kvix_index_evictions_total{cause}` says why. */
  readonly indexEvictions: { inc(labels: { cause: string }, n: number): void };
  readonly lookupRequests: TwinCounter;
  /** Per lookup, the longest contiguous prefix chain the best pod holds (llm-d's meaning since #2400). */
  readonly lookupHits: TwinCounter;
  readonly maxPodHitCount: TwinCounter;
  readonly lookupLatency: TwinHistogram;
  readonly speculationConfirmed: Counter;
  readonly speculationExpired: Counter;
  readonly speculationLatency: Histogram;
  readonly backendUp: Gauge<'backend'>;
  readonly backendErrors: Counter<'operation'>;
  // kvix's own, per pod.
  readonly lastSeq: Gauge<'pod'>;
  readonly gaps: Counter<'pod'>;
  readonly lost: Counter<'pod'>;
  readonly replays: Counter<'pod' | 'reason' | 'outcome'>;
  readonly resets: Counter<'pod'>;
  readonly overflows: Counter<'pod'>;
  readonly lag: Histogram<'pod'>;
  readonly podQueueDepth: Gauge<'pod'>;
  readonly topicMismatches: Counter<'pod'>;
  readonly batchesApplied: Counter<'pod'>;
  readonly batchesRejected: Counter<'pod' | 'reason'>;
  readonly rulesInferred: Counter<'pod' | 'rules'>;
  readonly lmcacheExpired: Counter<'pod'>;
  // Index size, read from the index when scraped (not tracked per operation on the hot path).
  readonly indexSize: Gauge<'plugin_name' | 'plugin_type'>;
  readonly indexBytes: Gauge;
  readonly podEntries: Gauge<'pod' | 'kind'>;
  private sizeSource: KvBlockIndex | null = null;

  constructor(registry: Registry) {
    const registers = [registry];
    const twin = (current: string, legacy: string, help: string): TwinCounter =>
      new TwinCounter(new Counter({ name: current, help, registers }), new Counter({ name: legacy, help: `[Deprecated: use ${current}] ${help}`, registers }));
    this.messagesReceived = new PodIdentifierCounter(new Counter({ name: `${P}events_messages_received_total`, help: 'KV-event messages received, per pod.', labelNames: ['pod_identifier'], registers }));
    this.activeSubscribers = new Gauge({ name: `${P}events_active_subscribers`, help: 'Pods with an active KV-event subscription.', registers });
    this.reconnections = new PodIdentifierCounter(new Counter({ name: `${P}events_subscriber_reconnections_total`, help: 'Reconnection attempts to a pod\'s event endpoint.', labelNames: ['pod_identifier'], registers }));
    this.publishersRefused = new Counter({ name: `${P}events_publishers_refused_total`, help: 'Publishers refused by the centralized collector\'s CURVE allow-list (handshakes denied).', registers });
    this.zmqErrors = new PodIdentifierCounter(new Counter({ name: `${P}events_zmq_errors_total`, help: 'Malformed messages and transport errors, by operation.', labelNames: ['pod_identifier', 'operation'], registers }));
    this.storesSkipped = new Counter({ name: `${P}events_stores_skipped_total`, help: 'BlockStored events not (fully) indexed, by reason.', labelNames: ['cache_kind', 'reason'], registers });
    this.removalsSkipped = new Counter({ name: `${P}events_removals_skipped_total`, help: 'BlockRemoved events not applied, by reason.', labelNames: ['cache_kind', 'reason'], registers });
    this.dedupSuppressed = twin(`${P}events_dedup_removed_hashes_suppressed_total`, 'kvcache_kvevents_dedup_removed_hashes_suppressed_total', 'Removed hashes suppressed because another announcement still holds them.');
    this.dedupForwarded = twin(`${P}events_dedup_removed_hashes_forwarded_total`, 'kvcache_kvevents_dedup_removed_hashes_forwarded_total', 'Removed hashes forwarded to the index.');
    this.queueDepth = new Gauge({ name: `${P}events_pool_queue_depth`, help: 'Event batches waiting to be applied, all pods.', registers });
    this.queueCapacity = new Gauge({ name: `${P}events_pool_capacity`, help: 'Event batches that may wait per pod before its backlog is dropped.', registers });
    this.indexAdmissions = twin(`${P}index_admissions_total`, 'kvcache_index_admissions_total', 'Entries admitted to the index.');
    const evictions = twin(`${P}index_evictions_total`, 'kvcache_index_evictions_total', 'Entries removed from the index.');
    const evictionCauses = new Counter({ name: 'kvix_index_evictions_total', help: 'Entries removed from the index, by cause (event, clear, capacity, expiry).', labelNames: ['cause'], registers });
    this.indexEvictions = {
      inc: (labels, n) => {
        evictions.inc(n);
        evictionCauses.inc(labels, n);
      },
    };
    this.lookupRequests = twin(`${P}index_lookup_requests_total`, 'kvcache_index_lookup_requests_total', 'Index lookups.');
    this.lookupHits = twin(`${P}index_lookup_hits_total`, 'kvcache_index_lookup_hits_total', 'Per lookup, the longest contiguous prefix chain (from the first key) the best pod holds, summed.');
    this.maxPodHitCount = twin(`${P}index_max_pod_hit_count_total`, 'kvcache_index_max_pod_hit_count_total', 'Per lookup, the longest contiguous prefix chain any one pod holds, summed.');
    this.lookupLatency = new TwinHistogram(
      new FastHistogram({ name: `${P}index_lookup_latency_seconds`, help: 'Index lookup latency.', buckets: LOOKUP_BUCKETS, registers }),
      new FastHistogram({ name: 'kvcache_index_lookup_latency_seconds', help: '[Deprecated: use llm_d_epp_kv_cache_index_lookup_latency_seconds] Index lookup latency.', buckets: LOOKUP_BUCKETS, registers }),
    );
    this.speculationConfirmed = new Counter({ name: 'kvix_index_speculative_confirmed_total', help: 'Speculative entries replaced by the real entry.', registers });
    this.speculationExpired = new Counter({ name: 'kvix_index_speculative_expired_total', help: 'Speculative entries that expired unconfirmed.', registers });
    this.speculationLatency = new FastHistogram({ name: 'kvix_index_speculation_confirmation_seconds', help: 'From a routing decision to the engine event confirming it.', buckets: LAG_BUCKETS, registers });
    this.backendUp = new Gauge({ name: 'kvix_index_backend_up', help: 'Whether a networked index backend (Redis) is reachable (1) or not (0).', labelNames: ['backend'], registers });
    this.backendErrors = new Counter({ name: 'kvix_index_backend_errors_total', help: 'Index operations that failed because the backend was unreachable or refused them, by operation.', labelNames: ['operation'], registers });
    this.lastSeq = new Gauge({ name: 'kvix_ingest_pod_last_seq', help: 'Last event sequence number applied, per pod.', labelNames: ['pod'], registers });
    this.gaps = new Counter({ name: 'kvix_ingest_gaps_total', help: 'Sequence gaps seen, per pod.', labelNames: ['pod'], registers });
    this.lost = new Counter({ name: 'kvix_ingest_lost_batches_total', help: 'Batches neither received nor recovered by replay, per pod.', labelNames: ['pod'], registers });
    this.replays = new Counter({ name: 'kvix_ingest_replays_total', help: 'Replays, per pod, reason and outcome.', labelNames: ['pod', 'reason', 'outcome'], registers });
    this.batchesRejected = new Counter({ name: 'kvix_ingest_batches_rejected_total', help: 'Batches refused whole by a sanity limit (too many hashes in an event, too many tokens per hash), per pod and reason.', labelNames: ['pod', 'reason'], registers });
    this.rulesInferred = new Counter({ name: 'kvix_ingest_engine_rules_inferred_total', help: 'Engine rules (vllm, sglang, lmcache-inproc, lmcache-mp) a pod without configured engine had inferred from its events.', labelNames: ['pod', 'rules'], registers });
    this.lmcacheExpired = new Counter({ name: 'kvix_ingest_lmcache_expired_chunks_total', help: 'LMCache in-process chunks dropped by TTL or capacity (LMCache announces no removals), per pod.', labelNames: ['pod'], registers });
    this.resets = new Counter({ name: 'kvix_ingest_sequence_resets_total', help: 'Engine restarts seen as a sequence going back, per pod.', labelNames: ['pod'], registers });
    this.overflows = new Counter({ name: 'kvix_ingest_queue_overflows_total', help: 'Backlogs dropped because a pod\'s queue was full.', labelNames: ['pod'], registers });
    this.lag = new FastHistogram({ name: 'kvix_ingest_event_lag_seconds', help: 'From a batch\'s engine timestamp to applied, per pod.', labelNames: ['pod'], buckets: LAG_BUCKETS, registers });
    this.podQueueDepth = new Gauge({ name: 'kvix_ingest_queue_depth', help: 'Batches waiting, per pod.', labelNames: ['pod'], registers });
    this.topicMismatches = new Counter({ name: 'kvix_ingest_topic_mismatches_total', help: 'Messages whose topic names another pod than the endpoint they came from.', labelNames: ['pod'], registers });
    this.batchesApplied = new Counter({ name: 'kvix_ingest_batches_applied_total', help: 'Event batches applied, per pod.', labelNames: ['pod'], registers });
    // prom-client awaits an async collect() on scrape; an unreachable backend leaves the last values.
    // llm-d's labels name the plugin owning the index: kvix's precise prefix scorer's (as the hit ratio's).
    const plugin = { plugin_name: 'precise-prefix-cache-scorer', plugin_type: 'precise-prefix-cache-scorer' };
    const sizeGauge = (name: string, help: string): Gauge<'plugin_name' | 'plugin_type'> => {
      const g: Gauge<'plugin_name' | 'plugin_type'> = new Gauge({
        name,
        help,
        labelNames: ['plugin_name', 'plugin_type'] as const,
        registers,
        collect: async () => {
          const stats = await this.readSize((index) => index.stats());
          if (stats) g.set(plugin, stats.entries);
        },
      });
      return g;
    };
    this.indexSize = sizeGauge('llm_d_epp_prefix_indexer_size', '(block, pod) entries in the prefix index.');
    sizeGauge('inference_extension_prefix_indexer_size', '[Deprecated: use llm_d_epp_prefix_indexer_size] (block, pod) entries in the prefix index.');
    this.indexBytes = new Gauge({
      name: 'kvix_index_bytes_in_use',
      help: 'Bytes of index structures in use, what the byte capacity is measured against (0 for Redis: see its INFO memory).',
      registers,
      collect: async () => {
        const stats = await this.readSize((index) => index.stats());
        if (stats) this.indexBytes.set(stats.bytesInUse);
      },
    });
    this.podEntries = new Gauge({
      name: 'kvix_index_pod_entries',
      help: 'Entries the index holds per pod: kind="confirmed" from KV events, kind="speculative" from routing decisions not yet confirmed.',
      labelNames: ['pod', 'kind'],
      registers,
      collect: async () => {
        const counts = await this.readSize((index) => index.podCounts());
        if (!counts) return;
        // Rebuilt on every scrape, so a cleared or removed pod's series disappear.
        this.podEntries.reset();
        for (const c of counts) {
          this.podEntries.set({ pod: c.pod, kind: 'confirmed' }, c.entries - c.speculative);
          this.podEntries.set({ pod: c.pod, kind: 'speculative' }, c.speculative);
        }
      },
    });
  }

  /** The index whose size the size gauges report when scraped. */
  watchIndexSize(index: KvBlockIndex): void {
    this.sizeSource = index;
  }

  private async readSize<T>(read: (index: KvBlockIndex) => Promise<T>): Promise<T | null> {
    if (!this.sizeSource) return null;
    try {
      return await read(this.sizeSource);
    } catch {
      // Backend errors are already counted and logged by the backend's health hooks.
      return null;
    }
  }

  /** Observer hooks for the event applier. */
  applierObserver(): ApplierObserver {
    return {
      storeSkipped: (reason: StoreSkipReason) => this.storesSkipped.inc({ reason }),
      removalSkipped: (reason: RemoveSkipReason) => this.removalsSkipped.inc({ reason }),
      lmcacheExpired: (pod: string, chunks: number) => this.lmcacheExpired.inc({ pod }, chunks),
      removalsDeduplicated: (forwarded, suppressed) => {
        if (forwarded > 0) this.dedupForwarded.inc(forwarded);
        if (suppressed > 0) this.dedupSuppressed.inc(suppressed);
      },
    };
  }

  /** Observer hooks for an index backend. */
  indexObserver(): IndexObserver {
    return {
      admitted: (n) => this.indexAdmissions.inc(n),
      evicted: (n, cause) => this.indexEvictions.inc({ cause }, n),
      speculationConfirmed: (_pod, latencyMs) => {
        this.speculationConfirmed.inc();
        this.speculationLatency.observe(latencyMs / 1000);
      },
      speculationExpired: (_pod, count) => this.speculationExpired.inc(count),
    };
  }

  /** Health hooks for a networked index backend. */
  backendHealth(backend: string): BackendHealthObserver {
    return {
      up: (up) => this.backendUp.set({ backend }, up ? 1 : 0),
      error: (operation) => this.backendErrors.inc({ operation }),
    };
  }

  replay(pod: string, reason: ReplayReason, outcome: ReplayOutcome): void {
    this.replays.inc({ pod, reason, outcome });
  }

  /** Drops a pod's series once it is gone, so removed pods do not linger on dashboards. */
  forgetPod(pod: string): void {
    this.messagesReceived.remove({ pod });
    this.reconnections.remove({ pod });
    for (const m of [this.gaps, this.lost, this.resets, this.overflows, this.topicMismatches, this.batchesApplied, this.lmcacheExpired, this.lastSeq, this.podQueueDepth, this.lag]) {
      m.remove({ pod });
    }
    for (const reason of ['too_many_hashes', 'block_too_long']) this.batchesRejected.remove({ pod, reason });
    for (const rules of ['vllm', 'sglang', 'lmcache-inproc', 'lmcache-mp']) this.rulesInferred.remove({ pod, rules });
    for (const operation of ZMQ_ERROR_OPERATIONS) this.zmqErrors.remove({ pod, operation });
    for (const reason of REPLAY_REASONS) for (const outcome of REPLAY_OUTCOMES) this.replays.remove({ pod, reason, outcome });
  }
}
