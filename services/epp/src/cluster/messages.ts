import type { IndexSnapshot, PodEntry } from '@kvix/kv-index';
import type { PodTarget } from '@kvix/kv-ingest';
import type { PoolResourcesState } from '@kvix/kubernetes';
import type { TrainingEntry } from '@kvix/latency-predictor';
import type { ScrapeOutcome } from '@kvix/scheduler';
import type { IndexOp } from '@kvix/replication';
import type { WorkerAnalytics } from './analytics-merge.js';

/**
 * The messages between the EPP's primary process and its workers, over the cluster IPC channel
 * with Node's "advanced" serialization (typed arrays and bigints cross as they are). Every message
 * carries `kvix` so the channel can be shared with prom-client's and Node's own.
 */
export type PrimaryMessage =
  /** The index as the primary holds it, then every operation after it as `ops` batches. */
  | { kvix: 'snapshot'; seq: number; snapshot: IndexSnapshot | null }
  | { kvix: 'ops'; seq: number; ops: IndexOp[] }
  /** Other workers' routing decisions, to add as speculative entries. */
  | { kvix: 'speculation'; decisions: SpeculativeDecision[] }
  /** Another worker's requests and tokens in flight per endpoint (empty when it died), so load scorers and the latency predictor see all of them. */
  | { kvix: 'peer-load'; slot: number; counts: Record<string, number>; tokens: Record<string, TokensInFlight> }
  /** What the primary's discovery found: complete snapshots, as a discovery source reports them. */
  | { kvix: 'targets'; targets: PodTarget[] }
  /** The InferencePool's rewrite rules and objectives the primary follows (sent before the first targets, then on change). */
  | { kvix: 'pool-resources'; resources: PoolResourcesState }
  /** Other workers' completed requests' latencies, for this worker's built-in latency model to learn from too. */
  | { kvix: 'training'; entries: TrainingEntry[] }
  /** The primary's scrapes of the endpoints' /metrics since the last message (on `discovery?`: the latest of each). */
  | { kvix: 'scrapes'; scrapes: { id: string; outcome: ScrapeOutcome }[] }
  | { kvix: 'status?'; id: number }
  | { kvix: 'metrics?'; id: number }
  /** This worker's reuse analytics, to merge with the others' for /v1/analytics and /ui; `prefixes` false: without the shared-prefix sketch. */
  | { kvix: 'analytics?'; id: number; prefixes: boolean }
  /** A debug API request the primary's metrics port received, for the worker's own debug routes to answer. */
  | { kvix: 'http?'; id: number; method: 'GET' | 'POST'; url: string; body: string | null };

/** A routing decision as speculative entries: its prompt's request keys, the pods, their lifetime (0: the index's default). */
export interface SpeculativeDecision {
  requestKeys: BigUint64Array;
  entries: PodEntry[];
  ttlMs: number;
}

/** One metric family as `Registry.getMetricsAsJSON()` gives it, without functions (they cannot cross IPC). */
export interface MetricFamilyJson {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

/** A predicted-latency router's tokens in flight on one endpoint: prefilling, and context being decoded over. */
export interface TokensInFlight {
  prefill: number;
  decode: number;
}

export interface WorkerStatus {
  pid: number;
  ready: boolean;
  detail: Record<string, unknown>;
  /** The last index batch applied (the primary's `indexSeq` once caught up). */
  appliedSeq: number;
  /** Entries per pod in this worker's copy of the index (empty without an embedded index). */
  pods: { pod: string; entries: number; speculative: number }[];
  /** Requests in flight per endpoint: this worker's own, and the other workers' as it last heard. */
  inFlight: { own: Record<string, number>; peers: Record<string, number> };
  /** Tokens in flight per endpoint (predicted-latency routing; empty without it), the same two ways. */
  tokensInFlight: { own: Record<string, TokensInFlight>; peers: Record<string, TokensInFlight> };
}

export type WorkerMessage =
  /** The worker's index is built and empty: send the snapshot and the operations after it. */
  | { kvix: 'feed?' }
  | { kvix: 'started'; gatewayPort: number | null; extProcPort: number | null }
  /** This worker's observed latencies of one event-loop turn (already sent to any training server), for the others. */
  | { kvix: 'training'; entries: TrainingEntry[] }
  /** This worker's routing decisions of one event-loop turn. */
  | { kvix: 'speculation'; decisions: SpeculativeDecision[] }
  /** Discovery's pods and the pool's resources now, and every change after (the worker has no discovery of its own). */
  | { kvix: 'discovery?' }
  /** This worker's requests and tokens in flight per endpoint, after a change (coalesced). */
  | { kvix: 'load'; counts: Record<string, number>; tokens: Record<string, TokensInFlight> }
  | { kvix: 'status'; id: number; status: WorkerStatus }
  | { kvix: 'metrics'; id: number; metrics: MetricFamilyJson[] }
  /** Null: this worker keeps no analytics (a remote indexer) or is still starting. */
  | { kvix: 'analytics'; id: number; analytics: WorkerAnalytics | null }
  | { kvix: 'http'; id: number; status: number; contentType: string | null; body: string };

export function isPrimaryMessage(m: unknown): m is PrimaryMessage {
  return typeof m === 'object' && m !== null && typeof (m as { kvix?: unknown }).kvix === 'string';
}

export const isWorkerMessage = isPrimaryMessage as (m: unknown) => m is WorkerMessage;
