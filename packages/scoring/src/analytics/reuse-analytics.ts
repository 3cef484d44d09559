import type { PodScore } from '@kvix/kv-index';
import type { ScoringMetrics } from '../metrics.js';
import { mergeTopPrefixes, reportPrefixes, TopPrefixes, type SharedPrefix, type TopPrefixesState } from './top-prefixes.js';

/** Running totals of one model or pod (plain data: part of `ReuseState`). */
export interface Tally {
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

/**
 * ReuseAnalytics' running totals as plain data (records, numbers, bigints; no functions), so that
 * several processes' can cross an IPC channel and be merged (`mergeReuseStates`) into the totals
 * one process would have kept, then read as one `ReuseSnapshot` (`reuseSnapshot`).
 */
export interface ReuseState {
  blockSize: number;
  /** Unix milliseconds the totals run from. */
  since: number;
  scored: number;
  decided: number;
  byModel: Record<string, Tally>;
  routedByPod: Record<string, Tally>;
  routedByModel: Record<string, Tally>;
  /** The shared-prefix sketch; null when not asked for (it is most of the state's size). */
  prefixes: TopPrefixesState | null;
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
    private readonly blockSize: number,
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

  /** The `topLimit` most shared prefixes (0: none), with the hit ratios. */
  snapshot(topLimit = 20): ReuseSnapshot {
    return reuseSnapshot(this.state({ prefixes: topLimit > 0 }), topLimit);
  }

  /** A copy of the running totals as plain data; `prefixes: false` leaves the sketch out. */
  state(options: { prefixes: boolean }): ReuseState {
    return {
      blockSize: this.blockSize,
      since: this.since.getTime(),
      scored: this.scored,
      decided: this.decided,
      byModel: copyTallies(this.byModel),
      routedByPod: copyTallies(this.routedByPod),
      routedByModel: copyTallies(this.routedByModel),
      prefixes: options.prefixes ? this.prefixes.state() : null,
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

/**
 * A record keyed by data (model and pod names): without a prototype, so that a name such as
 * `__proto__` is a key like any other.
 */
function record<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

function copyTallies(map: Map<string, Tally>): Record<string, Tally> {
  const out = record<Tally>();
  for (const [k, t] of map) out[k] = { ...t, tiers: { ...t.tiers } };
  return out;
}

/**
 * Several processes' totals as the one process that saw all their requests would have kept them:
 * every count and sum adds up exactly (requests, blocks, hit blocks, per-tier blocks; the sums of
 * per-request ratios behind the means to floating-point rounding, as they add in another order),
 * and ratios are taken after the sums. `since` is the earliest. The shared prefixes merge as
 * `mergeTopPrefixes` says: exact until a process's sketch fills up, bounded after. The states'
 * block size must agree (the processes share one configuration).
 */
export function mergeReuseStates(states: readonly ReuseState[], blockSize: number): ReuseState {
  const merged: ReuseState = { blockSize, since: Date.now(), scored: 0, decided: 0, byModel: record(), routedByPod: record(), routedByModel: record(), prefixes: null };
  const sketches: TopPrefixesState[] = [];
  for (const s of states) {
    if (s.blockSize !== blockSize) throw new RangeError(`cannot merge reuse analytics of block size ${s.blockSize} into ${blockSize}`);
    merged.since = Math.min(merged.since, s.since);
    merged.scored += s.scored;
    merged.decided += s.decided;
    addTallies(merged.byModel, s.byModel);
    addTallies(merged.routedByPod, s.routedByPod);
    addTallies(merged.routedByModel, s.routedByModel);
    if (s.prefixes) sketches.push(s.prefixes);
  }
  if (sketches.length > 0) merged.prefixes = mergeTopPrefixes(sketches);
  return merged;
}

function addTallies(into: Record<string, Tally>, from: Record<string, Tally>): void {
  for (const [k, t] of Object.entries(from)) {
    const sum = (into[k] ??= { requests: 0, blocks: 0, hitBlocks: 0, ratioSum: 0, tiers: record() });
    sum.requests += t.requests;
    sum.blocks += t.blocks;
    sum.hitBlocks += t.hitBlocks;
    sum.ratioSum += t.ratioSum;
    for (const [tier, n] of Object.entries(t.tiers)) sum.tiers[tier] = (sum.tiers[tier] ?? 0) + n;
  }
}

/** The snapshot of one process's totals, or of several merged: the `topLimit` most shared prefixes (none without the sketch). */
export function reuseSnapshot(state: ReuseState, topLimit: number): ReuseSnapshot {
  return {
    since: new Date(state.since).toISOString(),
    scoring: { requests: state.scored, byModel: views(state.byModel) },
    routing: { decisions: state.decided, byPod: views(state.routedByPod), byModel: views(state.routedByModel) },
    topPrefixes: state.prefixes ? reportPrefixes(state.prefixes.items, state.blockSize, topLimit) : [],
  };
}

function views(tallies: Record<string, Tally>): Record<string, TallyView> {
  const out = record<TallyView>();
  for (const [k, t] of Object.entries(tallies)) {
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
