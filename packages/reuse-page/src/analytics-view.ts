import type { IndexStack, IngestMetrics, PodDebugState } from '@kvix/kv-ingest';
import type { ReuseSnapshot, SharedPrefix } from '@kvix/scoring';
import type { Histogram } from 'prom-client';

/** The pods a service knows; `stream` only where the service reads the pod's KV events itself. */
export interface ReusePods {
  pods(): { id: string; stream: PodDebugState['stream'] | null }[];
}

/** What the analytics are computed from: one service's index, its reuse tallies, pods and ingestion metrics. */
export interface ReuseSources {
  /** The reuse tallies: a `ReuseAnalytics` (`@kvix/scoring`), or several processes' merged. */
  analytics: ReuseTallies;
  stack: IndexStack;
  pods: ReusePods;
  ingestMetrics: IngestMetrics;
}

/** Where the hit ratios and shared prefixes come from; `ReuseAnalytics` is one. */
export interface ReuseTallies {
  /** The running totals with the `topLimit` most shared prefixes (0: none). */
  snapshot(topLimit: number): RoutingTallies | Promise<RoutingTallies>;
}

/**
 * The tallies, and what is known only where they were counted when that is not the process
 * serving the page: an EPP's routing workers each count their own decisions and hold their
 * decisions' speculative entries in their own copies of the index.
 */
export interface RoutingTallies extends ReuseSnapshot {
  /**
   * The speculative entries, when the processes that route hold them and `stack`'s index holds
   * none: the view reads speculation from here and adds these entries to the index's counts.
   * Absent: read from `stack`'s index and `ingestMetrics`, as one process has them.
   */
  speculation?: SpeculationTally;
  /** The processes whose tallies these are (merged), and those that did not answer (left out). */
  workers?: { included: string[]; missing: string[] };
}

/** Cumulative histogram buckets (`le` in seconds, the last +Infinity). */
export interface Bucket {
  le: number;
  count: number;
}

/** A routing process's speculative entries: how many live, settled, and how fast events confirmed them. */
export interface SpeculationTally {
  active: number;
  confirmed: number;
  expired: number;
  /** Live speculative entries per pod. */
  byPod: Record<string, number>;
  /** Decision → confirming event, seconds. */
  confirmationBuckets: Bucket[];
}

export interface Quantiles {
  count: number;
  /** Upper bounds of the histogram buckets holding each quantile (null without observations). */
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

export interface AnalyticsView extends Omit<ReuseSnapshot, 'topPrefixes'> {
  /** Only where the tallies are several processes' merged (see `RoutingTallies.workers`). */
  workers?: { included: string[]; missing: string[] };
  topPrefixes: (SharedPrefix & { pods: string[] })[];
  speculation: { active: number; confirmed: number; expired: number; accuracy: number | null; confirmationSeconds: Quantiles };
  events: Record<string, { lastSeq: string | null; gaps: number; replays: number; resets: number; overflows: number; lost: number; lagSeconds: Quantiles }>;
  index: { entries: number; keys: number; bytesInUse: number; byPod: Record<string, { entries: number; speculative: number }> };
}

/**
 * Everything users ask about cache reuse in one document: hit ratios (scoring and routing), the
 * most shared prefixes and who holds them, speculation accuracy, event lag per pod, index size.
 */
export async function analyticsView(sources: ReuseSources, topLimit: number): Promise<AnalyticsView> {
  const { analytics: reuse, stack, pods: directory, ingestMetrics: metrics } = sources;
  const { speculation: routed, workers, ...snapshot } = await reuse.snapshot(topLimit);
  const topPrefixes = await Promise.all(
    snapshot.topPrefixes.map(async (p) => {
      const result = await stack.index.lookup(BigUint64Array.of(BigInt(p.key)), { earlyStop: false });
      const pods = new Set<string>();
      for (let j = result.offsets[0]!; j < result.offsets[1]!; j++) pods.add(result.pods[result.podIndex[j]!]!);
      return { ...p, pods: [...pods].sort() };
    }),
  );
  const [stats, counts] = await Promise.all([stack.index.stats(), stack.index.podCounts()]);
  const lags = await bucketsByPod(metrics.lag);
  const events: AnalyticsView['events'] = {};
  for (const p of directory.pods()) {
    const s = p.stream;
    if (!s) continue; // a follower: the publisher reads the events
    events[p.id] = { lastSeq: s.lastSeq, gaps: s.gaps, replays: s.replays, resets: s.resets, overflows: s.overflows, lost: s.lost, lagSeconds: quantiles(lags.get(p.id) ?? []) };
  }
  const spec = routed ?? (await localSpeculation(stats, counts, metrics));
  const { confirmed, expired, active } = spec;
  const byPod: AnalyticsView['index']['byPod'] = Object.fromEntries(counts.map((c) => [c.pod, { entries: c.entries, speculative: c.speculative }]));
  if (routed) {
    // The index holds confirmed entries only: the routing processes' speculative ones count beside them, as in one process.
    for (const [pod, n] of Object.entries(routed.byPod)) {
      const held = Object.hasOwn(byPod, pod) ? byPod[pod]! : (byPod[pod] = { entries: 0, speculative: 0 });
      held.entries += n;
      held.speculative += n;
    }
  }
  return {
    ...snapshot,
    ...(workers ? { workers } : {}),
    topPrefixes,
    speculation: { active, confirmed, expired, accuracy: confirmed + expired > 0 ? confirmed / (confirmed + expired) : null, confirmationSeconds: quantiles([...spec.confirmationBuckets]) },
    events,
    index: { entries: stats.entries + (routed ? routed.active : 0), keys: stats.keys, bytesInUse: Math.round(stats.bytesInUse), byPod },
  };
}

/** The speculative entries of the index this process routes with (a routing worker answers its own with this). */
export async function speculationTally(stack: IndexStack, metrics: IngestMetrics): Promise<SpeculationTally> {
  const [stats, counts] = await Promise.all([stack.index.stats(), stack.index.podCounts()]);
  return localSpeculation(stats, counts, metrics);
}

type IndexStats = Awaited<ReturnType<IndexStack['index']['stats']>>;
type PodCounts = Awaited<ReturnType<IndexStack['index']['podCounts']>>[number];

async function localSpeculation(stats: IndexStats, counts: PodCounts[], metrics: IngestMetrics): Promise<SpeculationTally> {
  const { confirmed, expired, active } = stats.speculative;
  const byPod = Object.fromEntries(counts.filter((c) => c.speculative > 0).map((c) => [c.pod, c.speculative]));
  return { active, confirmed, expired, byPod, confirmationBuckets: (await bucketsByPod(metrics.speculationLatency)).get('') ?? [] };
}

/** Cumulative bucket counts of a histogram, per value of its `pod` label ('' when it has none). */
async function bucketsByPod(hist: Histogram<string>): Promise<Map<string, Bucket[]>> {
  const out = new Map<string, Bucket[]>();
  const data = await hist.get();
  for (const v of data.values) {
    if (v.metricName !== `${data.name}_bucket`) continue;
    const pod = String(v.labels['pod'] ?? '');
    const le = v.labels['le'] === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels['le']);
    let list = out.get(pod);
    if (!list) out.set(pod, (list = []));
    list.push({ le, count: v.value });
  }
  return out;
}

function quantiles(buckets: Bucket[]): Quantiles {
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.count ?? 0;
  const at = (q: number): number | null => {
    if (total === 0) return null;
    const b = buckets.find((x) => x.count >= q * total)!;
    return Number.isFinite(b.le) ? b.le : null;
  };
  return { count: total, p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}
