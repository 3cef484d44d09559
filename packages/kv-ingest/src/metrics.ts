import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ApplierObserver, IndexObserver, KvBlockIndex, RemoveSkipReason, StoreSkipReason } from '@kvix/kv-index';
import type { BackendHealthObserver } from '@kvix/kv-index-redis';
import { REPLAY_OUTCOMES, REPLAY_REASONS, type ReplayOutcome, type ReplayReason } from './stream/pod-stream.js';

const P = 'llm_d_epp_kv_cache_';

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
  readonly messagesReceived: Counter<'pod'>;
  readonly activeSubscribers: Gauge;
  readonly reconnections: Counter<'pod'>;
  readonly zmqErrors: Counter<'pod' | 'operation'>; // operation: one of ZMQ_ERROR_OPERATIONS
  readonly storesSkipped: Counter<'reason'>;
  readonly removalsSkipped: Counter<'reason'>;
  readonly dedupSuppressed: Counter;
  readonly dedupForwarded: Counter;
  readonly queueDepth: Gauge;
  readonly queueCapacity: Gauge;
  readonly indexAdmissions: Counter;
  readonly indexEvictions: Counter<'cause'>;
  readonly lookupRequests: Counter;
  readonly lookupHits: Counter;
  readonly maxPodHitCount: Counter;
  readonly lookupLatency: Histogram;
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
  readonly indexSize: Gauge;
  readonly indexBytes: Gauge;
  readonly podEntries: Gauge<'pod' | 'kind'>;
  private sizeSource: KvBlockIndex | null = null;

  constructor(registry: Registry) {
    const registers = [registry];
    this.messagesReceived = new Counter({ name: `${P}events_messages_received_total`, help: 'KV-event messages received, per pod.', labelNames: ['pod'], registers });
    this.activeSubscribers = new Gauge({ name: `${P}events_active_subscribers`, help: 'Pods with an active KV-event subscription.', registers });
    this.reconnections = new Counter({ name: `${P}events_subscriber_reconnections_total`, help: 'Reconnection attempts to a pod\'s event endpoint.', labelNames: ['pod'], registers });
    this.zmqErrors = new Counter({ name: `${P}events_zmq_errors_total`, help: 'Malformed messages and transport errors, by operation.', labelNames: ['pod', 'operation'], registers });
    this.storesSkipped = new Counter({ name: `${P}events_stores_skipped_total`, help: 'BlockStored events not (fully) indexed, by reason.', labelNames: ['reason'], registers });
    this.removalsSkipped = new Counter({ name: `${P}events_removals_skipped_total`, help: 'BlockRemoved events not applied, by reason.', labelNames: ['reason'], registers });
    this.dedupSuppressed = new Counter({ name: `${P}events_dedup_removed_hashes_suppressed_total`, help: 'Removed hashes suppressed because another announcement still holds them.', registers });
    this.dedupForwarded = new Counter({ name: `${P}events_dedup_removed_hashes_forwarded_total`, help: 'Removed hashes forwarded to the index.', registers });
    this.queueDepth = new Gauge({ name: `${P}events_pool_queue_depth`, help: 'Event batches waiting to be applied, all pods.', registers });
    this.queueCapacity = new Gauge({ name: `${P}events_pool_capacity`, help: 'Event batches that may wait per pod before its backlog is dropped.', registers });
    this.indexAdmissions = new Counter({ name: `${P}index_admissions_total`, help: 'Entries admitted to the index.', registers });
    this.indexEvictions = new Counter({ name: `${P}index_evictions_total`, help: 'Entries removed from the index, by cause.', labelNames: ['cause'], registers });
    this.lookupRequests = new Counter({ name: `${P}index_lookup_requests_total`, help: 'Index lookups.', registers });
    this.lookupHits = new Counter({ name: `${P}index_lookup_hits_total`, help: 'Keys found by index lookups.', registers });
    this.maxPodHitCount = new Counter({ name: `${P}index_max_pod_hit_count_total`, help: 'Sum over lookups of the longest run of consecutive keys any pod holds.', registers });
    this.lookupLatency = new Histogram({ name: `${P}index_lookup_latency_seconds`, help: 'Index lookup latency.', buckets: LOOKUP_BUCKETS, registers });
    this.speculationConfirmed = new Counter({ name: 'kvix_index_speculative_confirmed_total', help: 'Speculative entries replaced by the real entry.', registers });
    this.speculationExpired = new Counter({ name: 'kvix_index_speculative_expired_total', help: 'Speculative entries that expired unconfirmed.', registers });
    this.speculationLatency = new Histogram({ name: 'kvix_index_speculation_confirmation_seconds', help: 'From a routing decision to the engine event confirming it.', buckets: LAG_BUCKETS, registers });
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
    this.lag = new Histogram({ name: 'kvix_ingest_event_lag_seconds', help: 'From a batch\'s engine timestamp to applied, per pod.', labelNames: ['pod'], buckets: LAG_BUCKETS, registers });
    this.podQueueDepth = new Gauge({ name: 'kvix_ingest_queue_depth', help: 'Batches waiting, per pod.', labelNames: ['pod'], registers });
    this.topicMismatches = new Counter({ name: 'kvix_ingest_topic_mismatches_total', help: 'Messages whose topic names another pod than the endpoint they came from.', labelNames: ['pod'], registers });
    this.batchesApplied = new Counter({ name: 'kvix_ingest_batches_applied_total', help: 'Event batches applied, per pod.', labelNames: ['pod'], registers });
    // prom-client awaits an async collect() on scrape; an unreachable backend leaves the last values.
    this.indexSize = new Gauge({
      name: 'llm_d_epp_prefix_indexer_size',
      help: '(block, pod) entries in the prefix index.',
      registers,
      collect: async () => {
        const stats = await this.readSize((index) => index.stats());
        if (stats) this.indexSize.set(stats.entries);
      },
    });
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
    for (const m of [this.messagesReceived, this.reconnections, this.gaps, this.lost, this.resets, this.overflows, this.topicMismatches, this.batchesApplied, this.lmcacheExpired, this.lastSeq, this.podQueueDepth, this.lag]) {
      m.remove({ pod });
    }
    for (const reason of ['too_many_hashes', 'block_too_long']) this.batchesRejected.remove({ pod, reason });
    for (const rules of ['vllm', 'sglang', 'lmcache-inproc', 'lmcache-mp']) this.rulesInferred.remove({ pod, rules });
    for (const operation of ZMQ_ERROR_OPERATIONS) this.zmqErrors.remove({ pod, operation });
    for (const reason of REPLAY_REASONS) for (const outcome of REPLAY_OUTCOMES) this.replays.remove({ pod, reason, outcome });
  }
}
