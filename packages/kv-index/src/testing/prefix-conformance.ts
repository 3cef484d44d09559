import { afterEach, describe, expect, it } from 'vitest';
import { ForwardingIndex } from '../forwarding-index.js';
import { DEFAULT_TIER_WEIGHTS, prefixScores, scoreLookup, tierWeights, type PodScore, type TierWeights } from '../scorer.js';
import type { KvBlockIndex, LookupOptions, LookupResult, PodEntry, PrefixMatch } from '../types.js';
import type { IndexUnderTest } from './conformance.js';

export interface PrefixConformanceHarness {
  create(config: { speculativeTtlMs: number }): Promise<IndexUnderTest>;
}

const range = (from: number, count: number): BigUint64Array => BigUint64Array.from({ length: count }, (_, i) => BigInt.asUintN(64, 0x9e3779b97f4a7c15n * BigInt(from + i + 1)));
const gpu = (pod: string, group?: number): PodEntry => (group === undefined ? { pod, tier: 'gpu', speculative: false } : { pod, tier: 'gpu', speculative: false, group });
const cpu = (pod: string): PodEntry => ({ pod, tier: 'cpu', speculative: false });
const spec = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: true });

/** Scores compared as the scorer's users read them: the same pods, runs and tiers; scores to rounding. */
export function sameScores(what: string, got: PodScore[], want: PodScore[]): void {
  const shape = (xs: PodScore[]): string[] => xs.map((s) => `${s.pod} ${s.matchedBlocks}/${s.totalBlocks} ${JSON.stringify(Object.entries(s.tiers).sort())}`).sort();
  const a = shape(got);
  const b = shape(want);
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${what}: prefix match and lookup+score disagree\n  matchPrefix: ${a.join(' | ')}\n  lookup:      ${b.join(' | ')}`);
  const byPod = new Map(want.map((s) => [s.pod, s]));
  for (const s of got) {
    const w = byPod.get(s.pod)!;
    if (Math.abs(s.score - w.score) > 1e-9 * Math.max(1, w.score) || Math.abs(s.normalized - w.normalized) > 1e-12) {
      throw new Error(`${what}: ${s.pod} scores ${s.score} (normalised ${s.normalized}) by prefix match, ${w.score} (${w.normalized}) by lookup`);
    }
  }
  for (let k = 1; k < got.length; k++) {
    const [p, q] = [got[k - 1]!, got[k]!];
    if (q.matchedBlocks > 0 && p.score < q.score - 1e-9 * Math.max(1, q.score)) throw new Error(`${what}: prefix scores out of order at ${k}: ${p.pod} ${p.score} before ${q.pod} ${q.score}`);
  }
}

/**
 * An index whose every lookup first answers the same question through matchPrefix and checks it
 * against scoreLookup of the lookup (both weightings; the walk's side effects are the same keys,
 * used in the same order). Wrapped around a backend under the model check, it compares the fast
 * path with the lookup path over every random operation sequence the check generates.
 */
export class PrefixCheckingIndex extends ForwardingIndex {
  checked = 0;
  private readonly weightings: TierWeights[] = [DEFAULT_TIER_WEIGHTS, tierWeights({ tiers: { cpu: 0.3, disk: 0.6 }, speculative: 0.9, unknown: 0.1 })];

  constructor(inner: KvBlockIndex) {
    super(inner);
  }

  override async lookup(requestKeys: BigUint64Array, options: LookupOptions = {}): Promise<LookupResult> {
    const weights = this.weightings[this.checked % 2]!;
    const pods = options.pods === undefined ? undefined : [...options.pods];
    const match = await this.inner.matchPrefix(requestKeys, { ...(pods ? { pods } : {}), weights });
    const result = await this.inner.lookup(requestKeys, { ...options, ...(pods ? { pods } : {}) });
    const what = `lookup of ${requestKeys.length} keys${pods ? ` for [${pods.join(', ')}]` : ''}`;
    if ((options.earlyStop ?? true) && match.keyCount !== result.keyCount) throw new Error(`${what}: prefix match examined ${match.keyCount} keys, lookup ${result.keyCount}`);
    sameScores(what, prefixScores(match, requestKeys.length, pods), scoreLookup(result, requestKeys.length, weights, pods));
    this.checked++;
    return result;
  }
}

function figures(match: PrefixMatch): Record<string, { matched: number; score: number; tiers: Record<string, number> }> {
  const out: Record<string, { matched: number; score: number; tiers: Record<string, number> }> = {};
  const slots = match.tiers.length + 1;
  for (let k = 0; k < match.podCount; k++) {
    const tiers: Record<string, number> = {};
    for (let t = 0; t < slots; t++) {
      const c = match.tierBlocks[k * slots + t]!;
      if (c > 0) tiers[t === slots - 1 ? 'speculative' : match.tiers[t]!] = c;
    }
    out[match.pods[match.podIndex[k]!]!] = { matched: match.matchedBlocks[k]!, score: Math.round(match.score[k]! * 1e9) / 1e9, tiers };
  }
  return out;
}

/**
 * What every backend's matchPrefix must answer (the in-memory index walks runs; others may answer
 * through matchPrefixByLookup). Run beside runIndexConformance.
 */
export function runPrefixMatchConformance(name: string, harness: PrefixConformanceHarness): void {
  describe(`prefix match conformance: ${name}`, () => {
    const open: KvBlockIndex[] = [];
    const make = async (): Promise<IndexUnderTest> => {
      const t = await harness.create({ speculativeTtlMs: 60_000 });
      open.push(t.index);
      return t;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((i) => i.close()));
    });

    it('reports each pod\'s run from key 0, its tiers and its best-tier score, stopping where no pod goes on', async () => {
      const { index } = await make();
      const k = range(0, 10);
      await index.add(null, k.subarray(0, 8), [gpu('a:1')]);
      await index.add(null, k.subarray(0, 3), [cpu('b:1')]);
      await index.add(null, k.subarray(3, 5), [gpu('b:1')]);
      await index.add(null, k.subarray(0, 2), [gpu('b:1')]);
      await index.add(null, k.subarray(9, 10), [gpu('c:1')]); // after a gap no one fills
      const match = await index.matchPrefix(k);
      expect(match.keyCount).toBe(8);
      expect(figures(match)).toEqual({
        'a:1': { matched: 8, score: 8, tiers: { gpu: 8 } },
        'b:1': { matched: 5, score: 4.8, tiers: { gpu: 4, cpu: 3 } },
      });
      expect(prefixScores(match, 10).map((s) => [s.pod, s.matchedBlocks])).toEqual([
        ['a:1', 8],
        ['b:1', 5],
      ]);
    });

    it('answers for the candidate pods only, listing candidates without a match at zero', async () => {
      const { index } = await make();
      const k = range(20, 6);
      await index.add(null, k, [gpu('a:1'), gpu('b:1')]);
      await index.add(null, k.subarray(0, 2), [gpu('c:1')]);
      const match = await index.matchPrefix(k, { pods: ['c:1', 'never:1'] });
      expect(match.keyCount).toBe(2);
      expect(figures(match)).toEqual({ 'c:1': { matched: 2, score: 2, tiers: { gpu: 2 } } });
      expect(prefixScores(match, 6, ['c:1', 'never:1', 'never:1']).map((s) => [s.pod, s.matchedBlocks])).toEqual([
        ['c:1', 2],
        ['never:1', 0],
      ]);
      expect((await index.matchPrefix(k, { pods: [] })).keyCount).toBe(0);
    });

    it('counts speculative blocks apart, and a block held in several groups of a tier once', async () => {
      const { index } = await make();
      const k = range(40, 4);
      await index.add(null, k, [spec('a:1')]);
      await index.add(null, k.subarray(0, 2), [gpu('b:1', 0), gpu('b:1', 1)]);
      const match = await index.matchPrefix(k, { weights: tierWeights({ speculative: 0.5 }) });
      expect(figures(match)).toEqual({
        'a:1': { matched: 4, score: 2, tiers: { speculative: 4 } },
        'b:1': { matched: 2, score: 2, tiers: { gpu: 2 } },
      });
    });

    it('follows removals, clears and confirmations', async () => {
      const { index } = await make();
      const k = range(60, 6);
      await index.add(null, k, [gpu('a:1'), cpu('b:1')]);
      await index.add(null, k, [spec('c:1')]);
      await index.evict(k[3]!, 'request', [gpu('a:1')]);
      await index.add(null, k.subarray(0, 2), [gpu('c:1')]); // confirms two of c's speculative blocks
      await index.clear('b:1');
      expect(figures(await index.matchPrefix(k))).toEqual({
        'a:1': { matched: 3, score: 3, tiers: { gpu: 3 } },
        'c:1': { matched: 6, score: 6, tiers: { gpu: 2, speculative: 4 } },
      });
    });

    it('answers for a prompt a hundred pods hold in several tiers and groups', async () => {
      const { index } = await make();
      const k = range(80, 24);
      for (let p = 0; p < 100; p++) {
        const pod = `10.1.${p >> 8}.${p & 255}:8000`;
        await index.add(null, k.subarray(0, 4 + (p % 20)), [gpu(pod, p % 3), cpu(pod), { pod, tier: `t${p % 7}`, speculative: false }]);
        if (p % 4 === 0) await index.add(null, k, [spec(pod)]);
      }
      const all = await index.matchPrefix(k);
      const result = await index.lookup(k);
      expect(all.podCount).toBe(100);
      sameScores('100 pods', prefixScores(all, k.length), scoreLookup(result, k.length));
    });

    it('agrees with scoring the lookup, key run after key run, on a fleet of shared prefixes', async () => {
      const { index } = await make();
      const pods = Array.from({ length: 8 }, (_, p) => `10.0.0.${p}:8000`);
      let seed = 7;
      const rand = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
      const prompts = Array.from({ length: 6 }, (_, f) => range(1000 + f * 100, 64));
      for (let op = 0; op < 300; op++) {
        const p = prompts[rand(prompts.length)]!;
        const from = rand(3) === 0 ? rand(32) : 0;
        const to = from + 1 + rand(64 - from);
        const pod = pods[rand(pods.length)]!;
        const r = rand(10);
        if (r < 6) await index.add(null, p.subarray(from, to), [rand(4) === 0 ? cpu(pod) : rand(6) === 0 ? spec(pod) : gpu(pod, rand(3) === 0 ? rand(2) : undefined)]);
        else if (r < 9) await index.evict(p[from]!, 'request', [gpu(pod), cpu(pod)]);
        else await index.clear(pod);
        const q = prompts[rand(prompts.length)]!;
        const candidates = rand(2) === 0 ? undefined : pods.filter(() => rand(2) === 0);
        const match = await index.matchPrefix(q, candidates ? { pods: candidates } : {});
        const result = await index.lookup(q, candidates ? { pods: candidates } : {});
        expect(match.keyCount).toBe(result.keyCount);
        sameScores(`operation ${op}`, prefixScores(match, q.length, candidates), scoreLookup(result, q.length, DEFAULT_TIER_WEIGHTS, candidates));
      }
    });
  });
}
