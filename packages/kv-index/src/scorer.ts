import { allocPrefixColumns } from './result-slab.js';
import { FLAG_SPECULATIVE, IndexError, type KvBlockIndex, type LookupResult, type PrefixMatch, type PrefixMatchOptions, type TierWeights } from './types.js';

export type { TierWeights } from './types.js';

export const DEFAULT_TIER_WEIGHTS: TierWeights = Object.freeze({
  // remote: a copy another host or a shared store holds (vLLM 0.34 locality REMOTE), loaded like storage.
  tiers: Object.freeze({ gpu: 1.0, cpu: 0.8, disk: 0.5, storage: 0.5, remote: 0.5 }),
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

/** Per-pod working state, reused across calls (scoring is synchronous) and grown on demand. */
let cap = 0;
let runLen = new Int32Array(0);
let score = new Float64Array(0);
let best = new Float64Array(0);
let specCounts = new Int32Array(0);
/** Per pod (and per pod and tier): 1 + the last block counted, so a block held in several groups counts once. */
let specSeen = new Int32Array(0);
let touched = new Int32Array(0);
let matched = new Uint8Array(0);
let tierCounts = new Int32Array(0);
let tierSeen = new Int32Array(0);
let tierCap = 0;

function ensureScratch(pods: number, tiers: number): void {
  if (pods > cap) {
    cap = Math.max(pods, 2 * cap, 64);
    runLen = new Int32Array(cap);
    score = new Float64Array(cap);
    best = new Float64Array(cap).fill(-1);
    specCounts = new Int32Array(cap);
    specSeen = new Int32Array(cap);
    touched = new Int32Array(cap);
    matched = new Uint8Array(cap);
    tierCap = 0;
  }
  if (tiers > tierCap || tierCounts.length < cap * Math.max(tiers, tierCap)) {
    tierCap = Math.max(tiers, tierCap, 8);
    tierCounts = new Int32Array(cap * tierCap);
    tierSeen = new Int32Array(cap * tierCap);
  }
}

let cachedWeights: TierWeights | null = null;
let cachedTiers: readonly string[] | null = null;
let cachedTierCount = -1;
let tierWeight = new Float64Array(0);

/** Weight per tier index of a lookup, rebuilt only when the weights or the tier table change. */
export function tierWeightsFor(weights: TierWeights, tiers: readonly string[]): Float64Array {
  if (weights !== cachedWeights || tiers !== cachedTiers || tiers.length !== cachedTierCount) {
    tierWeight = new Float64Array(tiers.length);
    for (let t = 0; t < tiers.length; t++) tierWeight[t] = weights.tiers[tiers[t]!] ?? weights.unknown;
    cachedWeights = weights;
    cachedTiers = tiers;
    cachedTierCount = tiers.length;
  }
  return tierWeight;
}

/**
 * Walks a lookup's keys from block 0 for every pod at once, stopping each pod at its first missing
 * block and summing the best tier weight it holds each block in; leaves the per-pod figures in the
 * scratch arrays for the `started` pods listed in `touched`. Returns `started`.
 */
function walkRuns(result: LookupResult, weights: TierWeights): number {
  const tierCount = result.tiers.length;
  ensureScratch(result.pods.length, tierCount);
  const tierWeight = tierWeightsFor(weights, result.tiers);
  const { offsets, podIndex, tierIndex, flags } = result;
  const stride = tierCap;
  // Pods that started a run at block 0; later blocks can only continue those runs.
  let started = 0;
  for (let i = 0; i < result.keyCount; i++) {
    let advanced = 0;
    const to = offsets[i + 1]!;
    for (let j = offsets[i]!; j < to; j++) {
      const p = podIndex[j]!;
      if (runLen[p] !== i) continue;
      if (i === 0 && best[p]! < 0) touched[started++] = p;
      const speculative = (flags[j]! & FLAG_SPECULATIVE) !== 0;
      const w = speculative ? weights.speculative : tierWeight[tierIndex[j]!]!;
      if (w > best[p]!) {
        if (best[p]! < 0) advanced++;
        best[p] = w;
      }
      // Blocks per tier, not entries: one pod may hold a block in several groups of a tier.
      if (speculative) {
        if (specSeen[p] !== i + 1) {
          specSeen[p] = i + 1;
          specCounts[p]!++;
        }
      } else {
        const slot = p * stride + tierIndex[j]!;
        if (tierSeen[slot] !== i + 1) {
          tierSeen[slot] = i + 1;
          tierCounts[slot]!++;
        }
      }
    }
    if (advanced === 0) break;
    for (let k = 0; k < started; k++) {
      const p = touched[k]!;
      if (best[p]! >= 0) {
        score[p]! += best[p]!;
        best[p] = -1;
        runLen[p] = i + 1;
      }
    }
  }
  return started;
}

/** Clears one pod's scratch after its figures were read. */
function resetPod(p: number, tierCount: number): void {
  const stride = tierCap;
  for (let t = 0; t < tierCount; t++) {
    tierCounts[p * stride + t] = 0;
    tierSeen[p * stride + t] = 0;
  }
  runLen[p] = 0;
  score[p] = 0;
  best[p] = -1;
  specCounts[p] = 0;
  specSeen[p] = 0;
}

/**
 * Longest-prefix scores from a lookup: for each pod, walk the keys from block 0, stop at its first
 * missing block, and sum the best tier weight it holds each block in. Pods with a match come
 * first, by score then pod name (so ties order deterministically); pods listed in `pods` that hold
 * nothing follow with a zero score, in the order given. Other pods are not reported.
 */
export function scoreLookup(result: LookupResult, totalBlocks: number, weights: TierWeights = DEFAULT_TIER_WEIGHTS, pods?: Iterable<string>): PodScore[] {
  const tierCount = result.tiers.length;
  const started = walkRuns(result, weights);
  const stride = tierCap;
  const out: PodScore[] = [];
  for (let k = 0; k < started; k++) {
    const p = touched[k]!;
    const tiers: Record<string, number> = {};
    for (let t = 0; t < tierCount; t++) {
      const c = tierCounts[p * stride + t]!;
      if (c > 0) tiers[result.tiers[t]!] = c;
    }
    if (specCounts[p]! > 0) tiers['speculative'] = specCounts[p]!;
    out.push({ pod: result.pods[p]!, score: score[p]!, normalized: totalBlocks > 0 ? score[p]! / totalBlocks : 0, matchedBlocks: runLen[p]!, totalBlocks, tiers });
    resetPod(p, tierCount);
  }
  return finishScores(out, result.pods, totalBlocks, pods);
}

/** The same per-pod figures as a PrefixMatch (what a backend without a faster path answers). */
export function matchFromLookup(result: LookupResult, weights: TierWeights = DEFAULT_TIER_WEIGHTS): PrefixMatch {
  const tierCount = result.tiers.length;
  const started = walkRuns(result, weights);
  const stride = tierCap;
  const slots = tierCount + 1;
  const columns = allocPrefixColumns(started, slots);
  for (let k = 0; k < started; k++) {
    const p = touched[k]!;
    columns.podIndex[k] = p;
    columns.matchedBlocks[k] = runLen[p]!;
    columns.score[k] = score[p]!;
    for (let t = 0; t < tierCount; t++) columns.tierBlocks[k * slots + t] = tierCounts[p * stride + t]!;
    columns.tierBlocks[k * slots + tierCount] = specCounts[p]!;
    resetPod(p, tierCount);
  }
  return { keyCount: result.keyCount, podCount: started, ...columns, pods: result.pods, tiers: result.tiers };
}

/** `matchPrefix` for a backend without a faster path: a lookup (early stop), then `matchFromLookup`. */
export async function matchPrefixByLookup(index: KvBlockIndex, requestKeys: BigUint64Array, options: PrefixMatchOptions = {}): Promise<PrefixMatch> {
  const result = await index.lookup(requestKeys, options.pods === undefined ? {} : { pods: options.pods });
  return matchFromLookup(result, options.weights ?? DEFAULT_TIER_WEIGHTS);
}

/**
 * A prefix match as scores, exactly as `scoreLookup` reports the lookup it stands for: pods with a
 * match by score then pod name, then the listed `pods` that hold nothing. (Scores are summed per
 * run rather than per block, so they may differ from `scoreLookup`'s in the last bits.)
 */
export function prefixScores(match: PrefixMatch, totalBlocks: number, pods?: Iterable<string>): PodScore[] {
  const tierCount = match.tiers.length;
  const slots = tierCount + 1;
  // Sorted by score, then pod name, comparing numbers: the names' order is ranked once per pod table
  // (string compares of 32 similar endpoint names were most of this function's time).
  const rank = nameRanksOf(match.pods);
  const { score, podIndex } = match;
  const before = (a: number, b: number): number => score[b]! - score[a]! || rank[podIndex[a]!]! - rank[podIndex[b]!]!;
  const order: number[] = [];
  for (let k = 0; k < match.podCount; k++) order.push(k);
  if (order.length > 64) {
    order.sort(before);
  } else {
    // Insertion sort: a router's candidates are a few dozen pods.
    for (let i = 1; i < order.length; i++) {
      const k = order[i]!;
      let j = i - 1;
      for (; j >= 0 && before(order[j]!, k) > 0; j--) order[j + 1] = order[j]!;
      order[j + 1] = k;
    }
  }
  const out: PodScore[] = [];
  for (const k of order) {
    const tiers: Record<string, number> = {};
    for (let t = 0; t < tierCount; t++) {
      const c = match.tierBlocks[k * slots + t]!;
      if (c > 0) tiers[match.tiers[t]!] = c;
    }
    const spec = match.tierBlocks[k * slots + tierCount]!;
    if (spec > 0) tiers['speculative'] = spec;
    const s = match.score[k]!;
    out.push({ pod: match.pods[match.podIndex[k]!]!, score: s, normalized: totalBlocks > 0 ? s / totalBlocks : 0, matchedBlocks: match.matchedBlocks[k]!, totalBlocks, tiers });
  }
  return appendUnmatched(out, match.pods, totalBlocks, pods);
}

const nameRankCache = new WeakMap<readonly string[], Int32Array>();

/** Each pod's place in the name order of a pod table (cached: pod tables are shared). */
function nameRanksOf(table: readonly string[]): Int32Array {
  let rank = nameRankCache.get(table);
  if (rank === undefined) {
    const byName = table.map((_, i) => i).sort((a, b) => (table[a]! < table[b]! ? -1 : table[a]! > table[b]! ? 1 : 0));
    rank = new Int32Array(table.length);
    byName.forEach((id, place) => (rank![id] = place));
    nameRankCache.set(table, rank);
  }
  return rank;
}

/** Sorts scored pods and appends the listed pods without a match (each once, in the order given). */
function finishScores(out: PodScore[], table: readonly string[], totalBlocks: number, pods: Iterable<string> | undefined): PodScore[] {
  if (out.length > 1) out.sort(byScoreThenPod);
  return appendUnmatched(out, table, totalBlocks, pods);
}

/** Appends the listed pods without a match (each once, in the order given) to sorted scores. */
function appendUnmatched(out: PodScore[], table: readonly string[], totalBlocks: number, pods: Iterable<string> | undefined): PodScore[] {
  const scored = out.length;
  if (pods === undefined) return out;
  ensureScratch(table.length, 0);
  const ids = podIdsOf(table);
  // Walked twice (marks set, then cleared): a one-shot iterable would leave its marks behind.
  const listed: readonly string[] = Array.isArray(pods) ? (pods as readonly string[]) : [...pods];
  for (let k = 0; k < scored; k++) matched[ids.get(out[k]!.pod)!] = 1;
  let absent: Set<string> | null = null;
  for (const pod of listed) {
    const id = ids.get(pod);
    if (id !== undefined) {
      if (matched[id] === 1) continue;
      matched[id] = 1;
    } else {
      // A pod the index never named: listed once however often it is given.
      if (absent?.has(pod)) continue;
      (absent ??= new Set()).add(pod);
    }
    out.push({ pod, score: 0, normalized: 0, matchedBlocks: 0, totalBlocks, tiers: {} });
  }
  // Every mark goes, the scored pods' included: a pod scored now but not listed would otherwise
  // stay marked and be left out of the next call's list.
  for (const pod of listed) {
    const id = ids.get(pod);
    if (id !== undefined) matched[id] = 0;
  }
  for (let k = 0; k < scored; k++) matched[ids.get(out[k]!.pod)!] = 0;
  return out;
}

const podIdCache = new WeakMap<readonly string[], Map<string, number>>();

/** Pod name → index in a pod table; pod tables are shared across lookups, so this is cached. */
function podIdsOf(table: readonly string[]): Map<string, number> {
  let ids = podIdCache.get(table);
  if (ids === undefined) {
    ids = new Map();
    table.forEach((pod, i) => ids!.set(pod, i));
    podIdCache.set(table, ids);
  }
  return ids;
}

function byScoreThenPod(a: PodScore, b: PodScore): number {
  return b.score - a.score || (a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0);
}
