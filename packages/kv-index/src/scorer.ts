import { FLAG_SPECULATIVE, IndexError, type LookupResult } from './types.js';

/** Weight of a block by the tier a pod holds it in (configurable; defaults from the spec). */
export interface TierWeights {
  /** Per tier name (lower-case): gpu, cpu, disk, storage, … */
  tiers: Readonly<Record<string, number>>;
  /** A speculative entry (a routing decision not yet confirmed by events). */
  speculative: number;
  /** A tier not listed above. */
  unknown: number;
}

export const DEFAULT_TIER_WEIGHTS: TierWeights = Object.freeze({
  tiers: Object.freeze({ gpu: 1.0, cpu: 0.8, disk: 0.5, storage: 0.5 }),
  speculative: 1.0,
  unknown: 1.0,
});

export function tierWeights(overrides: { tiers?: Record<string, number>; speculative?: number; unknown?: number } = {}): TierWeights {
  const tiers = { ...DEFAULT_TIER_WEIGHTS.tiers, ...(overrides.tiers ?? {}) };
  const w: TierWeights = {
    tiers,
    speculative: overrides.speculative ?? DEFAULT_TIER_WEIGHTS.speculative,
    unknown: overrides.unknown ?? DEFAULT_TIER_WEIGHTS.unknown,
  };
  for (const [name, v] of [...Object.entries(tiers), ['speculative', w.speculative] as const, ['unknown', w.unknown] as const]) {
    if (!(typeof v === 'number' && v >= 0 && Number.isFinite(v))) {
      throw new IndexError('INVALID_CONFIG', `tier weight ${name} must be a finite number >= 0, got ${String(v)}`);
    }
  }
  return w;
}

export interface PodScore {
  pod: string;
  /** Sum over the pod's consecutive run from block 0 of the best tier weight per block. */
  score: number;
  /** score / totalBlocks, in [0, 1] (never truncated). */
  normalized: number;
  /** Length of the consecutive run from block 0. */
  matchedBlocks: number;
  totalBlocks: number;
  /** Blocks of the run held in each tier ("speculative" for unconfirmed ones); a block may count in several. */
  tiers: Record<string, number>;
}

/**
 * Longest-prefix scores from a lookup: for each pod, walk the keys from block 0, stop at its first
 * missing block, and sum the best tier weight it holds each block in. Pods listed in `pods` but
 * holding nothing get a zero score; pods absent from both are not reported. Sorted by score, then
 * by pod name (so equal scores order deterministically).
 */
export function scoreLookup(result: LookupResult, totalBlocks: number, weights: TierWeights = DEFAULT_TIER_WEIGHTS, pods?: Iterable<string>): PodScore[] {
  const podCount = result.pods.length;
  const tierWeight = result.tiers.map((t) => weights.tiers[t] ?? weights.unknown);
  const runLen = new Int32Array(podCount);
  const score = new Float64Array(podCount);
  const best = new Float64Array(podCount).fill(-1);
  const tierCounts = new Map<number, Float64Array>();
  const specCounts = new Int32Array(podCount);
  const touched: number[] = [];

  for (let i = 0; i < result.keyCount; i++) {
    const from = result.offsets[i]!;
    const to = result.offsets[i + 1]!;
    touched.length = 0;
    for (let j = from; j < to; j++) {
      const p = result.podIndex[j]!;
      if (runLen[p] !== i) continue;
      const speculative = (result.flags[j]! & FLAG_SPECULATIVE) !== 0;
      const w = speculative ? weights.speculative : tierWeight[result.tierIndex[j]!]!;
      if (best[p]! < 0) touched.push(p);
      if (w > best[p]!) best[p] = w;
      if (speculative) specCounts[p]!++;
      else {
        let counts = tierCounts.get(p);
        if (counts === undefined) tierCounts.set(p, (counts = new Float64Array(result.tiers.length)));
        counts[result.tierIndex[j]!]!++;
      }
    }
    if (touched.length === 0) break;
    for (const p of touched) {
      score[p]! += best[p]!;
      best[p] = -1;
      runLen[p] = i + 1;
    }
  }

  const out: PodScore[] = [];
  const reported = new Set<string>();
  for (let p = 0; p < podCount; p++) {
    if (runLen[p] === 0) continue;
    const tiers: Record<string, number> = {};
    const counts = tierCounts.get(p);
    if (counts) counts.forEach((c, t) => c > 0 && (tiers[result.tiers[t]!] = c));
    if (specCounts[p]! > 0) tiers['speculative'] = specCounts[p]!;
    const pod = result.pods[p]!;
    reported.add(pod);
    out.push({ pod, score: score[p]!, normalized: totalBlocks > 0 ? score[p]! / totalBlocks : 0, matchedBlocks: runLen[p]!, totalBlocks, tiers });
  }
  if (pods !== undefined) {
    for (const pod of pods) {
      if (!reported.has(pod)) {
        reported.add(pod);
        out.push({ pod, score: 0, normalized: 0, matchedBlocks: 0, totalBlocks, tiers: {} });
      }
    }
  }
  return out.sort((a, b) => b.score - a.score || (a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0));
}
