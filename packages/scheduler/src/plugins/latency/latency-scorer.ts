import type { Candidate, SchedulingRequest, Scorer, Scores } from '../../types.js';
import { PREFIX_MATCH, type PrefixMatch } from '../prefix-match.js';
import { latencyCycle, type EndpointLatency } from './cycle.js';

export interface LatencyScorerOptions {
  /** Blend of TTFT and TPOT headroom (llm-d: 0.8 / 0.2). */
  ttftWeight: number;
  tpotWeight: number;
  /** least: the pod closest to its SLO (bin-packing, keeps idle pods free); most: the most headroom. */
  headroomSelectionStrategy: 'least' | 'most';
  /** Weights of the composite used when no prediction could be had. */
  compositeKVWeight: number;
  compositeQueueWeight: number;
  compositePrefixWeight: number;
  /**
   * When no pod is predicted to meet the SLO (and none is idle): `least-deficit` (llm-d) scores the
   * smallest predicted violation highest; `defer` scores every pod alike, leaving the choice to the
   * other scorers — in overload every pod misses anyway, and keeping cache affinity keeps throughput.
   */
  whenNoneMeetsSlo: 'least-deficit' | 'defer';
}

/** Scores are w / 100 with integer w in [1, 100], as llm-d's. */
const W_MAX = 100;
const EPS = 1e-9;

interface Entry {
  id: string;
  p: EndpointLatency;
}

/**
 * llm-d's latency scorer: candidates meeting their SLO (valid TTFT and TPOT) are scored by their
 * headroom, normalised within the group and blended TTFT/TPOT; when none meets it, idle pods
 * first, then the least severe violation (TPOT only, then TTFT only, then both), scored by the
 * smallest deficit (or, with `whenNoneMeetsSlo: defer`, alike). Requests without an SLO (the producer skipped them) score every pod alike, so
 * the other scorers decide exactly as without this plugin; when predictions failed, a composite
 * of free KV cache, queue and prefix share stands in.
 */
export class LatencyScorer implements Scorer {
  readonly kind = 'scorer';
  readonly type = 'latency-scorer';

  constructor(
    readonly name: string,
    private readonly options: LatencyScorerOptions,
  ) {}

  score(request: SchedulingRequest, candidates: readonly Candidate[]): Scores {
    const cycle = latencyCycle(request);
    if (cycle?.status === 'skipped') return new Map(candidates.map((c) => [c.endpoint.id, 1]));
    const entries: Entry[] = [];
    if (cycle?.status === 'predicted') for (const c of candidates) {
      const p = cycle.predictions.get(c.endpoint.id);
      if (p) entries.push({ id: c.endpoint.id, p });
    }
    if (entries.length === 0) return this.composite(request, candidates);
    const out: Scores = new Map(candidates.map((c) => [c.endpoint.id, 0]));
    const positive = entries.filter((e) => e.p.ttftValid && e.p.tpotValid);
    if (positive.length > 0) {
      this.scoreBucket(positive, out, false);
      return out;
    }
    const idle = entries.filter((e) => e.p.dispatched === 0);
    if (idle.length > 0) {
      this.scoreBucket(idle, out, true);
      return out;
    }
    if (this.options.whenNoneMeetsSlo === 'defer') {
      for (const e of entries) out.set(e.id, 1);
      return out;
    }
    const tpotOnly = entries.filter((e) => e.p.ttftValid && !e.p.tpotValid);
    const ttftOnly = entries.filter((e) => !e.p.ttftValid && e.p.tpotValid);
    const both = entries.filter((e) => !e.p.ttftValid && !e.p.tpotValid);
    this.scoreBucket(tpotOnly.length > 0 ? tpotOnly : ttftOnly.length > 0 ? ttftOnly : both, out, true);
    return out;
  }

  private scoreBucket(bucket: Entry[], out: Scores, forceLeast: boolean): void {
    const sum = this.options.ttftWeight + this.options.tpotWeight;
    let alpha = sum > 0 ? this.options.ttftWeight / sum : 1;
    let beta = sum > 0 ? this.options.tpotWeight / sum : 0;
    const ttft = bucket.map((e) => Math.abs(e.p.ttftHeadroom));
    const tpot = bucket.map((e) => Math.abs(e.p.tpotHeadroom));
    const [minT, maxT] = [Math.min(...ttft), Math.max(...ttft)];
    const [minP, maxP] = [Math.min(...tpot), Math.max(...tpot)];
    const rangeT = maxT - minT;
    const rangeP = maxP - minP;
    // A dimension on which every pod is equal must not squash the other's spread.
    if (rangeT <= EPS && rangeP > EPS) [alpha, beta] = [0, 1];
    else if (rangeP <= EPS && rangeT > EPS) [alpha, beta] = [1, 0];
    const least = forceLeast || this.options.headroomSelectionStrategy === 'least';
    bucket.forEach((e, i) => {
      const nT = rangeT > EPS ? (ttft[i]! - minT) / rangeT : 0.5;
      const nP = rangeP > EPS ? (tpot[i]! - minP) / rangeP : 0.5;
      const combined = alpha * nT + beta * nP;
      const w = Math.min(W_MAX, Math.floor((least ? 1 - combined : combined) * W_MAX) + 1);
      out.set(e.id, w / W_MAX);
    });
  }

  private composite(request: SchedulingRequest, candidates: readonly Candidate[]): Scores {
    let wkv = this.options.compositeKVWeight;
    let wq = this.options.compositeQueueWeight;
    let wp = this.options.compositePrefixWeight;
    let sum = wkv + wq + wp;
    if (sum <= 0) [wkv, wq, wp, sum] = [1, 0, 0, 1];
    const maxQ = Math.max(0, ...candidates.map((c) => c.metrics?.waiting ?? 0));
    const match = request.cycle.get(PREFIX_MATCH) as PrefixMatch | undefined;
    const out: Scores = new Map();
    for (const c of candidates) {
      const q = c.metrics?.waiting ?? 0;
      const relQueue = maxQ > 0 ? (maxQ - q) / maxQ : 1;
      const kvFree = 1 - (c.metrics?.kvUsage ?? 0);
      const prefix = match && match.totalBlocks > 0 ? (match.matchedBlocks?.get(c.endpoint.id) ?? 0) / match.totalBlocks : 0;
      out.set(c.endpoint.id, Math.round(((wkv * kvFree + wq * relQueue + wp * prefix) / sum) * W_MAX) / W_MAX);
    }
    return out;
  }
}
