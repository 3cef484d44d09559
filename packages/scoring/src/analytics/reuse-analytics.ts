import type { PodScore } from '@kvix/kv-index';
import type { ScoringMetrics } from '../metrics.js';
import { TopPrefixes, type SharedPrefix } from './top-prefixes.js';

interface Tally {
  requests: number;
  blocks: number;
  /** Blocks the pod (best, or chosen) held, any tier. */
  hitBlocks: number;
  /** Sum of per-request hit ratios (for the mean). */
  ratioSum: number;
  tiers: Record<string, number>;
}

export interface TallyView {
  requests: number;
  blocks: number;
  hitBlocks: number;
  /** hitBlocks / blocks: the fraction of prompt blocks that could be reused. */
  blockHitRatio: number;
  /** Mean over requests of each one's hit ratio. */
  meanRequestHitRatio: number;
  /** Matched blocks per tier (a block held in two tiers counts in both; "speculative" for unconfirmed). */
  tiers: Record<string, number>;
}

export interface ReuseSnapshot {
  since: string;
  /** Per model: how much of each scored prompt the best pod held (what precise routing can reuse). */
  scoring: { requests: number; byModel: Record<string, TallyView> };
  /** Per chosen pod and per model: how much of each routed prompt the chosen pod held (what routing did reuse). */
  routing: { decisions: number; byPod: Record<string, TallyView>; byModel: Record<string, TallyView> };
  topPrefixes: SharedPrefix[];
}

/** Most pods tracked per pod-keyed table, so a churning fleet cannot grow it without bound. */
const MAX_PODS = 10_000;

/**
 * Cache-reuse analytics over scoring and routing: hit ratios per model, per pod and per tier,
 * and the most shared prompt prefixes. Prometheus gets the same figures as series; this keeps
 * the running totals for a JSON view.
 */
export class ReuseAnalytics {
  private since = new Date();
  private scored = 0;
  private decided = 0;
  private readonly byModel = new Map<string, Tally>();
  private readonly routedByPod = new Map<string, Tally>();
  private readonly routedByModel = new Map<string, Tally>();
  readonly prefixes: TopPrefixes;

  constructor(
    blockSize: number,
    private readonly metrics: ScoringMetrics | null = null,
    topPrefixCapacity = 4096,
  ) {
    this.prefixes = new TopPrefixes(blockSize, topPrefixCapacity);
  }

  /** A scored request: `best` is the highest-scoring pod (undefined when none matched). */
  observeScore(model: string, keys: BigUint64Array, best: PodScore | undefined, preview: () => string | null): void {
    this.scored++;
    const blocks = keys.length;
    const hit = best?.matchedBlocks ?? 0;
    const ratio = blocks > 0 ? hit / blocks : 0;
    add(tally(this.byModel, model), blocks, hit, ratio, best?.tiers);
    if (this.metrics) {
      if (blocks > 0) {
        this.metrics.hitRatio.observe(ratio);
        this.metrics.hitRatioByModel.observe({ model }, ratio);
      }
      this.metrics.scoredBlocks.inc({ model }, blocks);
      if (best) for (const [tier, n] of Object.entries(best.tiers)) this.metrics.matchedBlocks.inc({ model, tier }, n);
    }
    if (blocks > 0) this.prefixes.observe(model, keys, preview);
  }

  /** A routing decision: what the chosen pod held of the prompt when it was chosen. */
  observeDecision(model: string, pod: string, role: 'decode' | 'prefill', chosen: PodScore | undefined, blocks: number): void {
    this.metrics?.decisions.inc({ model, role });
    if (role !== 'decode') return;
    this.decided++;
    const hit = chosen?.matchedBlocks ?? 0;
    const ratio = blocks > 0 ? hit / blocks : 0;
    if (this.routedByPod.has(pod) || this.routedByPod.size < MAX_PODS) add(tally(this.routedByPod, pod), blocks, hit, ratio, chosen?.tiers);
    add(tally(this.routedByModel, model), blocks, hit, ratio, chosen?.tiers);
    if (this.metrics) {
      if (blocks > 0) this.metrics.routedHitRatio.observe({ model }, ratio);
      for (const [tier, n] of Object.entries(chosen?.tiers ?? {})) this.metrics.routedBlocks.inc({ model, pod, tier }, n);
      if (blocks > hit) this.metrics.routedBlocks.inc({ model, pod, tier: 'miss' }, blocks - hit);
    }
  }

  /** Drops a pod that left the fleet. */
  forgetPod(pod: string): void {
    this.routedByPod.delete(pod);
  }

  snapshot(topLimit = 20): ReuseSnapshot {
    return {
      since: this.since.toISOString(),
      scoring: { requests: this.scored, byModel: views(this.byModel) },
      routing: { decisions: this.decided, byPod: views(this.routedByPod), byModel: views(this.routedByModel) },
      topPrefixes: this.prefixes.report(topLimit),
    };
  }

  reset(): void {
    this.since = new Date();
    this.scored = 0;
    this.decided = 0;
    this.byModel.clear();
    this.routedByPod.clear();
    this.routedByModel.clear();
    this.prefixes.clear();
  }
}

function tally(map: Map<string, Tally>, key: string): Tally {
  let t = map.get(key);
  if (t === undefined) {
    t = { requests: 0, blocks: 0, hitBlocks: 0, ratioSum: 0, tiers: {} };
    map.set(key, t);
  }
  return t;
}

function add(t: Tally, blocks: number, hit: number, ratio: number, tiers: Record<string, number> | undefined): void {
  t.requests++;
  t.blocks += blocks;
  t.hitBlocks += hit;
  t.ratioSum += ratio;
  if (tiers) for (const [tier, n] of Object.entries(tiers)) t.tiers[tier] = (t.tiers[tier] ?? 0) + n;
}

function views(map: Map<string, Tally>): Record<string, TallyView> {
  const out: Record<string, TallyView> = {};
  for (const [k, t] of map) {
    out[k] = {
      requests: t.requests,
      blocks: t.blocks,
      hitBlocks: t.hitBlocks,
      blockHitRatio: t.blocks > 0 ? t.hitBlocks / t.blocks : 0,
      meanRequestHitRatio: t.requests > 0 ? t.ratioSum / t.requests : 0,
      tiers: { ...t.tiers },
    };
  }
  return out;
}
